"""DP-SGD through Opacus (privacy.epsilon): per-sample gradients, each clipped to privacy.max_grad_norm, Gaussian noise
sized by Opacus's RDP accountant so the whole run spends at most privacy.epsilon at privacy.delta.

Opacus's hooks go on the model's own layers (a GradSampleModule is built for them; the loop, eval and checkpoints keep
the plain model, so saved weights have their usual keys), and its DPOptimizer wraps the optimizer: the loop's step is
unchanged. Every embedding table is frozen: per-sample gradients of a vocab x width table cost batch x vocab x width
memory, and Hugging Face position and token-type embeddings see one (1, length) row shared by the whole batch, which
per-sample hooks cannot split. Batches are the loader's shuffled fixed-size batches, not Poisson samples: the spent
epsilon is the RDP accountant's for sampling rate batch / rows, as Opacus reports it with poisson_sampling=False.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llmft.config import FinetuneMethod, PrecisionMode, PrivacyConfig, TrainConfig
from llmft.errors import UserError
from llmft.reporting.console import console

REFUSED = "privacy.epsilon (DP-SGD, Opacus)"


def check_supported(config: TrainConfig, task: Any, processes: int) -> None:
    """Refuse, in one line each, what per-sample clipping cannot do here."""
    trainer = config.trainer
    refusals = [
        (processes > 1, "runs in one process (not under torchrun: DDP/FSDP)"),
        (not task.per_row_loss, f"needs a loss that is a sum of per-row terms; task family {config.task.family} couples rows"),
        (config.task.packing, "cannot split packed rows into examples: set task.packing=false"),
        (
            trainer.gradient_checkpointing,
            "needs each layer's activations (Opacus's hooks): set trainer.gradient_checkpointing=false",
        ),
        (trainer.compile, "hooks every layer, which torch.compile cannot trace: set trainer.compile=false"),
        (
            trainer.group_by_length is True,
            "accounts for shuffled batches, not batches chosen by length: unset trainer.group_by_length",
        ),
        (
            trainer.grad_accum_steps > 1 or (trainer.micro_batch_size or trainer.batch_size) < trainer.batch_size,
            "clips and noises one batch per step: set trainer.grad_accum_steps=1 and no trainer.micro_batch_size",
        ),
        (config.precision.mode is PrecisionMode.fp16, "needs unscaled per-sample gradients: use precision=fp32 or bf16"),
        (config.finetune.method is FinetuneMethod.qlora, "has no per-sample gradients for 4-bit layers: use finetune=lora"),
        (config.finetune.adversarial is not None, "and finetune.adversarial do not combine (per-sample hooks see every forward)"),
        (
            config.finetune.augment > 0,
            "accounts for each train row once, and finetune.augment's copies repeat every row: set finetune.augment=0",
        ),
    ]
    for refused, why in refusals:
        if refused:
            raise UserError(f"{REFUSED} {why}")


def _embedding_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for module in model.modules() if isinstance(module, torch.nn.Embedding) for p in module.parameters()]


def freeze_embeddings(model: torch.nn.Module) -> None:
    """Freeze every embedding table (see the module docstring)."""
    for p in _embedding_parameters(model):
        p.requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        raise UserError(f"{REFUSED} freezes the embeddings, and nothing else is left to train")


@dataclass
class PrivateTraining:
    """The noise a run adds and what it has spent."""

    cfg: PrivacyConfig
    noise_multiplier: float
    sample_rate: float
    frozen_embedding_parameters: int
    hooks: Any = None  # the GradSampleModule whose hooks sit on the model's layers

    def spent(self, steps: int) -> float:
        """Epsilon spent after `steps` noisy steps (RDP accountant, at privacy.delta)."""
        from opacus.accountants import RDPAccountant

        if steps == 0:
            return 0.0
        accountant = RDPAccountant()
        accountant.history = [(self.noise_multiplier, self.sample_rate, steps)]
        return float(accountant.get_epsilon(self.cfg.delta))

    def record(self, steps: int) -> dict[str, Any]:
        return {
            "epsilon_target": self.cfg.epsilon,
            "delta": self.cfg.delta,
            "max_grad_norm": self.cfg.max_grad_norm,
            "noise_multiplier": round(self.noise_multiplier, 6),
            "sample_rate": self.sample_rate,
            "steps": steps,
            "epsilon_spent": round(self.spent(steps), 6),
            "accountant": "rdp",
            "frozen_embedding_parameters": self.frozen_embedding_parameters,
        }


def make_private(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig, train_rows: int, num_steps: int
) -> tuple[torch.optim.Optimizer, PrivateTraining]:
    """Hook per-sample gradients onto the model's layers and wrap the optimizer in Opacus's DPOptimizer."""
    try:
        from opacus import GradSampleModule
        from opacus.accountants.utils import get_noise_multiplier
        from opacus.optimizers import DPOptimizer
    except ImportError:
        raise UserError(f'{REFUSED} needs Opacus: pip install "llmft[privacy]"') from None
    cfg, batch = config.privacy, config.trainer.batch_size
    if config.trainer.grad_accum_steps > 1:
        raise UserError(
            f"{REFUSED} clips and noises one batch per step, but the memory plan split batch {batch} into "
            f"{config.trainer.grad_accum_steps} passes: set a smaller trainer.batch_size"
        )
    sample_rate = min(1.0, batch / max(train_rows, 1))
    noise = get_noise_multiplier(
        target_epsilon=cfg.epsilon, target_delta=cfg.delta, sample_rate=sample_rate, steps=num_steps, accountant="rdp"
    )
    # Opacus's full backward hooks on the first trainable layer (its input comes from frozen embeddings) say so once
    warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed")
    try:
        hooks = GradSampleModule(model, batch_first=True, loss_reduction="mean", strict=True)
    except NotImplementedError:  # Opacus refuses trainable layers with buffers (BatchNorm's running statistics)
        raise UserError(
            f"{REFUSED} cannot give per-sample gradients to trainable layers with buffers ({_buffered_layers(model)}), "
            "whose statistics mix the rows of a batch: choose a backbone without them"
        ) from None
    private = DPOptimizer(
        optimizer, noise_multiplier=noise, max_grad_norm=cfg.max_grad_norm, expected_batch_size=batch, loss_reduction="mean"
    )
    frozen = sum(p.numel() for p in _embedding_parameters(model))
    return private, PrivateTraining(cfg, float(noise), sample_rate, frozen, hooks)


def _buffered_layers(model: torch.nn.Module) -> str:
    """The trainable layers that hold buffers, as Opacus finds them: 'name (Type)', the first three."""
    from opacus.utils.module_utils import trainable_modules

    names = [f"{name} ({type(m).__name__})" for name, m in trainable_modules(model) if next(m.buffers(), None) is not None]
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def save_spent(manifest_path: Path, private: PrivateTraining, steps: int) -> dict[str, Any]:
    """The epsilon the run spent: printed, and saved in run.json under `privacy`; returns the record."""
    record = private.record(steps)
    manifest = json.loads(manifest_path.read_text())
    manifest["privacy"] = record
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    console.print(
        f"DP-SGD: spent epsilon {record['epsilon_spent']:.3f} of {record['epsilon_target']} at delta "
        f"{record['delta']:g} (noise multiplier {record['noise_multiplier']:.3f}, {steps} steps, sample rate "
        f"{record['sample_rate']:.4f}; embeddings frozen)",
        highlight=False,
    )
    return record
