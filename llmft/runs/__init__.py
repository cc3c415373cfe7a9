"""The run folder: its paths and lock, checkpoints, resume, the manifest and the model card."""
