"""Export a run's checkpoint for deployment (ONNX with optional int8, a merged LoRA folder, GGUF), each export
verified against the PyTorch checkpoint on the run's own test rows. `llmft.commands.export` is the Hydra edge."""
