"""Which scaled-dot-product-attention kernels a CUDA run may use.

PyTorch's cuDNN attention builds an execution plan for every new sequence length (pytorch#155958, torchtune#1652).
Batches padded to their own longest row bring a new length at nearly every step, and on an H100 the planning made
the step CPU-bound: BERT-base classification in bf16 trained at 317 samples/s with cuDNN attention and 827 without;
a 0.5B decoder's padded SFT step took 0.287 s with it and 0.123 s without. Packed batches have one fixed length, and
there cuDNN is the faster kernel (55.3k vs 44.1k tokens/s). So cuDNN attention is off unless every training batch
has one length; `trainer.cudnn_attention` decides instead when set (bench/BENCHMARKS.md, GPU section).
"""

from __future__ import annotations

from typing import Optional

import torch


def use_cudnn_attention(asked: Optional[bool], device: torch.device, fixed_length: bool) -> bool:
    """Whether cuDNN attention stays enabled: the user's switch, else only for fixed-length (packed) batches. The
    answer only matters on CUDA; elsewhere it is reported as the default it would be."""
    if asked is not None:
        return bool(asked)
    return fixed_length


def apply(asked: Optional[bool], device: torch.device, fixed_length: bool) -> Optional[bool]:
    """Set the process-wide switch for a CUDA run and return it (None off CUDA, where there is nothing to set).
    Flash and memory-efficient attention, which plan nothing per length, take the padded batches instead."""
    if device.type != "cuda":
        return None
    enabled = use_cudnn_attention(asked, device, fixed_length)
    torch.backends.cuda.enable_cudnn_sdp(enabled)
    return enabled
