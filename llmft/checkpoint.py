"""Checkpoints in Hugging Face format, written atomically; `last` also keeps the training state."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import torch


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def atomic_write_dir(target: Path, write: Callable[[Path], None]) -> None:
    """Write a folder via `write(tmp)` then swap it in, so a crash leaves the old folder or the new one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; a checkpoint is meant to be shared
    try:
        write(tmp)
        _fsync_tree(tmp)
        old = target.parent / f".{target.name}.old"
        if old.exists():
            shutil.rmtree(old)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_model(target: Path, model: Any, tokenizer: Any) -> None:
    """`save_pretrained` of model and tokenizer: loadable by transformers alone."""

    def write(folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)

    atomic_write_dir(target, write)


def save_training_state(
    target: Path,
    model: Any,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    progress: dict[str, Any],
) -> None:
    """Model + tokenizer + optimizer/scheduler/scaler/RNG state and the loop's position."""

    def write(folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "progress": progress,
        }
        torch.save(state, folder / "trainer_state.pt")

    atomic_write_dir(target, write)


def load_training_state(folder: Path) -> Optional[dict[str, Any]]:
    path = folder / "trainer_state.pt"
    return torch.load(path, weights_only=True) if path.is_file() else None
