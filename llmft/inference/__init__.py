"""Inference: decoding a model's output (used by the generative tasks, `llmft generate` and `llmft serve`)."""
