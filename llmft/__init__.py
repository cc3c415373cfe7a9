"""llmft: config-driven supervised fine-tuning of Hugging Face language models."""

__version__ = "0.1.0"
