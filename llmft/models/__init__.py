"""Models: backbone loading and fit checks, the builtin offline models, SmolLM2, freezing and LoRA."""
