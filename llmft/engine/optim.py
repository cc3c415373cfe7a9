"""Optimizers and learning-rate schedules from their typed configs."""

from __future__ import annotations

import math
from typing import Callable

import torch

from llmft.config import OptimizerConfig, OptimizerName, SchedulerConfig, SchedulerName
from llmft.errors import UserError


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: biases and norm weights (1-D tensors) are not decayed."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(cfg: OptimizerConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The fused implementation where torch has one for the parameters' device (CPU and CUDA for all three): on a
    2-core CPU it made AdamW's step 4.5x faster for MiniLM's 22M parameters (see BENCHMARKS.md)."""
    groups = param_groups(model, cfg.weight_decay)
    fused = _fused_supported(groups) if cfg.fused is None else cfg.fused
    kwargs = {"fused": True} if fused else {}
    if cfg.name is OptimizerName.sgd:
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, **kwargs)
    betas = (cfg.betas[0], cfg.betas[1])
    if cfg.name is OptimizerName.adamw8bit:
        return _adamw8bit(groups, cfg.lr, betas, cfg.eps)
    if cfg.name is OptimizerName.adam:
        return torch.optim.Adam(groups, lr=cfg.lr, betas=betas, eps=cfg.eps, **kwargs)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, eps=cfg.eps, **kwargs)


def _adamw8bit(groups: list[dict], lr: float, betas: tuple[float, float], eps: float) -> torch.optim.Optimizer:
    """bitsandbytes' AdamW with 8-bit block-wise quantized moments (CUDA, or its CPU backend)."""
    try:
        import bitsandbytes as bnb
    except ImportError as ex:
        raise UserError('optimizer=adamw8bit needs bitsandbytes: pip install "llmft[qlora]"') from ex
    return bnb.optim.AdamW8bit(groups, lr=lr, betas=betas, eps=eps)


def _fused_supported(groups: list[dict]) -> bool:
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    params = [p for g in groups for p in g["params"]]
    devices = set(_get_fused_kernels_supported_devices())
    return bool(params) and all(
        p.device.type in devices and p.is_floating_point() and type(p.data) is torch.Tensor for p in params
    )


def warmup_steps(cfg: SchedulerConfig, total_steps: int) -> int:
    """`warmup_steps`, or `warmup_ratio` of the run rounded up (as transformers' Trainer: 0.29 x 100 -> 29)."""
    return cfg.warmup_steps if cfg.warmup_steps > 0 else math.ceil(cfg.warmup_ratio * total_steps)


def lr_multiplier(cfg: SchedulerConfig, total_steps: int) -> Callable[[int], float]:
    """The factor on the base lr at optimizer step `step` (0-based): linear warmup, then the decay. Warmup is
    transformers' (`get_linear_schedule_with_warmup` and its siblings): step / warmup, so the first step runs at 0 and
    step `warmup` reaches the full rate; the decays after it are transformers' too, so a run here and a Trainer run with
    the same warmup_steps follow one schedule."""
    warmup = warmup_steps(cfg, total_steps)
    decay_steps = max(1, total_steps - warmup)

    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        progress = min(1.0, (step - warmup) / decay_steps)
        if cfg.name is SchedulerName.constant:
            return 1.0
        if cfg.name is SchedulerName.linear:
            return 1.0 - progress
        if cfg.name is SchedulerName.cosine:
            cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
            return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine
        return cfg.gamma ** (step - warmup)

    return factor


def build_scheduler(
    cfg: SchedulerConfig, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(cfg, total_steps))
