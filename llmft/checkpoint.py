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


def atomic_write_dir(target: Path, write: Callable[[Path], None], keep_old_as: Optional[Path] = None) -> None:
    """Write a folder via `write(tmp)`, fsync it, then swap it in: a crash leaves the old folder or the new one.

    `keep_old_as`: move the folder being replaced there instead of deleting it.
    """
    import errno

    from llmft.errors import UserError

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; a checkpoint is meant to be shared
    try:
        write(tmp)
        _fsync_tree(tmp)
    except OSError as ex:
        shutil.rmtree(tmp, ignore_errors=True)
        if ex.errno == errno.ENOSPC:
            raise UserError(f"disk full while saving {target}; the previous checkpoint there is kept. Free space and resume") from ex
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = keep_old_as or target.parent / f".{target.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)  # the commit point
    _fsync_dir(target.parent)
    if keep_old_as is None:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_model(target: Path, model: Any, tokenizer: Any, state_dict: Optional[dict[str, Any]] = None) -> None:
    """`save_pretrained` of model and tokenizer: loadable by transformers alone. `state_dict`: the full
    weights gathered from a sharded (FSDP) model."""

    def write(folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True, state_dict=state_dict)
        tokenizer.save_pretrained(folder)
        if hasattr(model, "peft_config"):  # an adapter: keep the head's config (labels) beside it
            model.get_base_model().config.save_pretrained(folder)

    atomic_write_dir(target, write)


def rng_state() -> dict[str, Any]:
    """This process's RNG states (torch, CUDA, numpy, python), as tensors and plain values."""
    import random

    import numpy as np

    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def _set_rng_state(rng: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))


def save_training_state(
    root: Path,
    model: Any,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    loop_state: dict[str, Any],
    keep_last: int = 1,
    rng_per_rank: Optional[list[dict[str, Any]]] = None,
    sharded: Optional[tuple[dict[str, Any], dict[str, Any]]] = None,
) -> Path:
    """checkpoints/last: model + tokenizer + optimizer/scheduler/scaler/RNG state and the loop's position.

    With keep_last > 1 the replaced checkpoint moves to checkpoints/step-<N>; the oldest are pruned.
    `sharded`: (full model weights, full optimizer state by parameter name) gathered from an FSDP model.
    """
    import json

    target = root / "last"

    def write(folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True, state_dict=sharded[0] if sharded else None)
        tokenizer.save_pretrained(folder)
        state = {
            "optimizer": sharded[1] if sharded else optimizer.state_dict(),
            "optimizer_format": "full-by-name" if sharded else "torch",
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng_state(),
            "rng_per_rank": rng_per_rank or [],  # torchrun: every rank's dropout stream, restored rank by rank
            "loop": loop_state,
        }
        torch.save(state, folder / "trainer_state.pt")
        (folder / "loop_state.json").write_text(json.dumps(loop_state, indent=2) + "\n")

    keep_old_as = None
    previous = target / "loop_state.json"
    if keep_last > 1 and previous.is_file():
        keep_old_as = root / f"step-{json.loads(previous.read_text())['step']:07d}"
    atomic_write_dir(target, write, keep_old_as=keep_old_as)
    for stale in sorted(root.glob("step-*"))[: max(0, len(list(root.glob("step-*"))) - (keep_last - 1))]:
        shutil.rmtree(stale, ignore_errors=True)
    return target


def _is_tied(model: Any, name: str, missing: set[str]) -> bool:
    """True when parameter `name` shares its storage with a parameter that was loaded."""
    tensors = {**dict(model.named_parameters(remove_duplicate=False)), **dict(model.named_buffers(remove_duplicate=False))}
    target = tensors.get(name)
    return target is not None and any(
        other != name and other not in missing and t.data_ptr() == target.data_ptr() for other, t in tensors.items()
    )


def restore_training_state(
    folder: Path, model: Any, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler, rank: int = 0,
    sharded: bool = False,
) -> dict[str, Any]:
    """Load weights and trainer state from a resumable checkpoint; returns the saved loop state. `sharded`: the model
    is FSDP-sharded; every rank loads the full weights and optimizer state and keeps its shard."""
    from safetensors.torch import load_file

    from llmft.errors import UserError

    state_file = folder / "trainer_state.pt"
    if not state_file.is_file():
        raise UserError(f"{folder} has no trainer_state.pt: not a resumable checkpoint")
    state = torch.load(state_file, weights_only=True)  # tensors and plain containers only: no pickled code
    if (state.get("optimizer_format") == "full-by-name") != sharded:
        written = "an FSDP run" if not sharded else "a run without FSDP"
        raise UserError(f"{folder} was written by {written}; resume it with the trainer.strategy it was trained with")
    adapter = folder / "adapter_model.safetensors"
    if sharded:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

        full = StateDictOptions(full_state_dict=True, strict=False)  # tied weights are stored once
        set_model_state_dict(model, load_file(folder / "model.safetensors"), options=full)
        set_optimizer_state_dict(model, optimizer, state["optimizer"], options=full)
    elif adapter.is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(adapter))
    else:
        missing, unexpected = model.load_state_dict(load_file(folder / "model.safetensors"), strict=False)
        missing = [k for k in missing if not _is_tied(model, k, set(missing))]  # save_pretrained drops tied copies
        if unexpected or missing:
            raise UserError(f"checkpoint {folder} does not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    if not sharded:
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    per_rank = state.get("rng_per_rank") or []
    _set_rng_state(per_rank[rank] if rank < len(per_rank) else state["rng"])
    return dict(state["loop"])
