"""The training engine: the loop and its step, optimizers and schedules, precision, processes (single/DDP/FSDP)."""
