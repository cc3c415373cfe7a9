"""Precision as two objects: an autocast context and a GradScaler that is a no-op unless fp16."""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Optional

import torch

from llmft.config import Device, PrecisionMode
from llmft.errors import UserError


@dataclass
class Precision:
    mode: PrecisionMode  # resolved: never auto
    device: torch.device
    dtype: Optional[torch.dtype]  # autocast dtype; None for fp32

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device.type, enabled=self.mode is PrecisionMode.fp16)


def resolve_device(device: Device) -> torch.device:
    if device is Device.cuda and not torch.cuda.is_available():
        raise UserError("trainer.device=cuda but no CUDA device is available; use trainer.device=auto or cpu")
    import os

    local_rank = int(os.environ.get("LOCAL_RANK", 0))  # torchrun: one GPU per process
    if device is Device.auto:
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    return torch.device(f"cuda:{local_rank}" if device is Device.cuda else "cpu")


def resolve_precision(mode: PrecisionMode, device: torch.device) -> Precision:
    """`auto`: bf16 on a GPU that has it, fp16 on an older GPU, fp32 on CPU."""
    if mode is PrecisionMode.auto:
        if device.type == "cuda":
            mode = PrecisionMode.bf16 if torch.cuda.is_bf16_supported() else PrecisionMode.fp16
        else:
            mode = PrecisionMode.fp32
    if mode is PrecisionMode.fp16 and device.type != "cuda":
        raise UserError("precision=fp16 needs a CUDA GPU; on CPU use precision=fp32 (or bf16, which is slow here)")
    if mode is PrecisionMode.bf16 and device.type == "cpu":
        warnings.warn(
            "precision=bf16 on CPU: autocast runs, but CPUs without native bf16 matmul are much slower "
            "than fp32 (about 16x on the project's test machine); precision=fp32 is faster here",
            stacklevel=2,
        )
    dtype = {PrecisionMode.fp32: None, PrecisionMode.bf16: torch.bfloat16, PrecisionMode.fp16: torch.float16}[mode]
    return Precision(mode=mode, device=device, dtype=dtype)
