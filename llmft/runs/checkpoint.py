"""Checkpoints in Hugging Face format, written atomically; `last` also keeps the training state."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from llmft.errors import UserError
from llmft.runs.run_folder import RunFolder


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def _umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


def _apply_umask(folder: Path) -> None:
    """Give the folder and its files the modes the user's umask asks for: mkdtemp makes the folder 0700, and some
    writers (safetensors) create files 0600, though a checkpoint is meant to be shared as any other file of the run."""
    mask = _umask()
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def atomic_write_dir(target: Path, write: Callable[[Path], None], keep_old_as: Optional[Path] = None) -> None:
    """Write a folder via `write(tmp)`, fsync it, then swap it in: a crash leaves the old folder or the new one.

    `keep_old_as`: move the folder being replaced there instead of deleting it. A kill between the two renames of the
    swap leaves no `target`; `recover_swap` puts the newest whole copy back.
    """
    import errno

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=RunFolder.swap_temp_prefix(target), dir=target.parent))
    try:
        write(tmp)
        _apply_umask(tmp)
        _fsync_tree(tmp)
        with open(RunFolder.complete_marker(tmp), "w") as f:
            os.fsync(f.fileno())
        _fsync_dir(tmp)
    except OSError as ex:
        shutil.rmtree(tmp, ignore_errors=True)
        if ex.errno == errno.ENOSPC:
            raise UserError(
                f"disk full while saving {target}; the previous checkpoint there is kept. Free space and resume"
            ) from ex
        raise UserError(_save_failed(target, ex)) from ex
    except UserError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as ex:  # safetensors' "File too large" (ulimit -f), torch.save's RuntimeError, ...: whatever it is
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(_save_failed(target, ex)) from ex
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = keep_old_as or RunFolder.swap_old(target)
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)  # the commit point
    _fsync_dir(target.parent)
    RunFolder.complete_marker(target).unlink(missing_ok=True)  # only temp folders need it; a checkpoint folder is shared as it is
    if keep_old_as is None:
        shutil.rmtree(old, ignore_errors=True)


def _save_failed(target: Path, ex: BaseException) -> str:
    """One line for a save that failed (its temp folder is gone; `target` untouched)."""
    kept = "the previous checkpoint there is kept" if target.exists() else "nothing was saved there before"
    return f"cannot save {target} ({type(ex).__name__}: {_first_line(ex)}); {kept}"


def swap_leftover(target: Path) -> Optional[Path]:
    """The newest whole copy of `target` a swap left when killed between its renames: the complete temp folder (the save
    being committed), else the folder it replaced. None when `target` exists or nothing whole is left."""
    if target.exists():
        return None
    complete = [p for p in RunFolder.swap_temps(target) if RunFolder.complete_marker(p).is_file()]
    if complete:
        return max(complete, key=lambda p: p.stat().st_mtime)
    old = RunFolder.swap_old(target)
    return old if old.is_dir() else None


def recover_swap(target: Path) -> Optional[Path]:
    """Finish a swap a kill interrupted (see `swap_leftover`); returns the folder that became `target`, or None."""
    source = swap_leftover(target)
    if source is not None:
        os.replace(source, target)
        _fsync_dir(target.parent)
        RunFolder.complete_marker(target).unlink(missing_ok=True)
    return source


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def resume_fix(folder: Path) -> str:
    """What to do about a damaged file in a resumable checkpoint `folder`."""
    run = RunFolder.of_checkpoints(Path(folder).parent)
    older = run.step_checkpoints()
    if Path(folder) == run.last and older:
        return f"restore it from a copy, or move the older checkpoint {older[-1]} to {folder} and resume, or start a new run"
    return "restore it from a copy, or start a new run"


def check_weights(folder: Path, fix: str) -> None:
    """Refuse, in one line naming the file and `fix`, a truncated or garbled *.safetensors in `folder` (reads headers only:
    safetensors checks the header covers the whole file)."""
    from safetensors import SafetensorError, safe_open

    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            with safe_open(str(path), "pt") as weights:
                weights.keys()  # opening parsed and bounds-checked the header: nothing more to read
        except (SafetensorError, OSError) as ex:
            raise UserError(f"{path} is damaged ({_first_line(ex)}); {fix}") from ex


def _first_line(ex: BaseException) -> str:
    text = str(ex).strip()
    return text.splitlines()[0] if text else type(ex).__name__


def load_state_file(path: Path, fix: str) -> dict[str, Any]:
    """torch.load with weights_only (tensors and plain containers, never pickled code); a damaged file or one that holds
    code is refused in one line naming it."""
    import pickle

    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as ex:
        raise refused_pickle(path, ex, fix) from ex
    except (RuntimeError, EOFError, OSError, ValueError) as ex:
        raise UserError(f"{path} is damaged ({_first_line(ex).split('. ')[0]}); {fix}") from ex


def refused_pickle(path: Path, ex: Exception, fix: str) -> Exception:
    """The one-line error for a pickle `torch.load(weights_only=True)` refused (`ex`): one that holds code, or a damaged
    one. `path` may be a checkpoint folder (transformers or peft loaded one of its *.bin files): the file is found."""
    if Path(path).is_dir():
        files = sorted(Path(path).glob("*.bin"))
        path = next((f for f in files if _pickled_callables(f)), files[0] if files else path)
    code = re.findall(r"GLOBAL (\S+)", str(ex)) or (_pickled_callables(path) if Path(path).is_file() else [])
    if code:
        return UserError(
            f"{path} holds pickled code ({', '.join(code[:3])}), not only tensors, and was refused: llmft "
            f"never loads code from a checkpoint, and never writes it into one; {fix}"
        )
    return UserError(f"{path} is damaged (not a torch state file: {_first_line(ex).split('.')[0]}); {fix}")


def _pickled_callables(path: Path) -> list[str]:
    """The Python callables (other than torch's own) a pickle names: what unpickling it would import and may call.
    Reads the pickle inside a torch.save zip too; [] when the bytes are not a whole pickle."""
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                data = next((archive.read(n) for n in archive.namelist() if n.endswith("data.pkl")), b"")
        else:
            data = path.read_bytes()
        names, strings = [], []
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST"):
                names.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(".".join(strings[-2:]))
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # not a whole pickle: damaged, not code
        return []
    return [n for n in names if not n.startswith("torch.")]


def save_model(
    target: Path,
    model: Any,
    tokenizer: Any,
    state_dict: Optional[dict[str, Any]] = None,
    extra_files: Optional[Callable[[Path, Any], None]] = None,
) -> None:
    """`save_pretrained` of model and tokenizer: loadable by transformers alone. `state_dict`: the full weights when
    the module does not hold them whole (None: its own). `extra_files(folder, model)`: what the task adds for other
    libraries (`Task.checkpoint_files`)."""

    def write(folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True, state_dict=state_dict)
        tokenizer.save_pretrained(folder)
        if hasattr(model, "peft_config"):  # an adapter: keep the head's config (labels) beside it
            model.get_base_model().config.save_pretrained(folder)
        if extra_files is not None:
            extra_files(folder, model)

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
    weights: Optional[dict[str, Any]],
    optimizer_state: dict[str, Any],
    optimizer_format: str,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    loop_state: dict[str, Any],
    keep_last: int = 1,
    rng_per_rank: Optional[list[dict[str, Any]]] = None,
    extra_files: Optional[Callable[[Path, Any], None]] = None,
) -> Path:
    """checkpoints/last: model + tokenizer + optimizer/scheduler/scaler/RNG state and the loop's position.

    `weights` (None: the model's own) and `optimizer_state` come whole from the training strategy, which names their
    layout in `optimizer_format`. With keep_last > 1 the replaced checkpoint moves to checkpoints/step-<N>; the oldest
    are pruned. keep_last=0 keeps one, as 1 does, until the run finishes (see `drop_training_state`).
    `extra_files(folder, model)`: what the task adds for other libraries (`Task.checkpoint_files`).
    """
    import json

    run = RunFolder.of_checkpoints(root)
    target = run.last

    def write(folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True, state_dict=weights)
        tokenizer.save_pretrained(folder)
        if extra_files is not None:
            extra_files(folder, model)
        state = {
            "optimizer": optimizer_state,
            "optimizer_format": optimizer_format,
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng_state(),
            "rng_per_rank": rng_per_rank or [],  # torchrun: every rank's dropout stream, restored rank by rank
            "loop": loop_state,
        }
        torch.save(state, RunFolder.trainer_state(folder))
        RunFolder.loop_state(folder).write_text(json.dumps(loop_state, indent=2) + "\n")

    keep_old_as = None
    previous = RunFolder.loop_state(target)
    if keep_last > 1 and previous.is_file():
        keep_old_as = run.step_checkpoint(json.loads(previous.read_text())["step"])
    atomic_write_dir(target, write, keep_old_as=keep_old_as)
    older = run.step_checkpoints()
    for stale in older[: max(0, len(older) - (keep_last - 1))]:
        shutil.rmtree(stale, ignore_errors=True)
    return target


def drop_training_state(root: Path, keep_last: int) -> None:
    """After a finished run (never resumed: `trainer.resume` refuses it), the optimizer/scheduler/RNG state is two
    copies of the weights that nothing reads: drop `trainer_state.pt` from checkpoints/last and step-N, keeping their
    weights; `trainer.keep_last=0` removes those folders too. checkpoints/best stays."""
    run = RunFolder.of_checkpoints(root)
    folders = [run.last, *run.step_checkpoints(), *run.swap_leftovers_of_last()]
    for folder in folders:
        if keep_last == 0:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            RunFolder.trainer_state(folder).unlink(missing_ok=True)


def _is_tied(model: Any, name: str, missing: set[str]) -> bool:
    """True when parameter `name` shares its storage with a parameter that was loaded."""
    tensors = {**dict(model.named_parameters(remove_duplicate=False)), **dict(model.named_buffers(remove_duplicate=False))}
    target = tensors.get(name)
    return target is not None and any(
        other != name and other not in missing and t.data_ptr() == target.data_ptr() for other, t in tensors.items()
    )


def read_training_state(folder: Path) -> dict[str, Any]:
    """The trainer state of a resumable checkpoint (optimizer, scheduler, scaler, RNG, loop position), after checking
    its files: a missing, damaged or code-holding file is refused in one line naming it."""
    state_file = RunFolder.trainer_state(folder)
    if not state_file.is_file():
        raise UserError(f"{folder} has no trainer_state.pt: not a resumable checkpoint")
    fix = resume_fix(folder)
    state = load_state_file(state_file, fix)  # tensors and plain containers only: no pickled code
    if not isinstance(state, dict) or "loop" not in state:
        raise UserError(f"{state_file} is damaged (not an llmft trainer state); {fix}")
    check_weights(folder, fix)
    return state


def load_weights(folder: Path, model: Any) -> None:
    """A checkpoint's weights (or its LoRA adapter) into a whole model; a mismatch is refused naming the keys."""
    from safetensors.torch import load_file

    adapter = folder / "adapter_model.safetensors"
    if adapter.is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(adapter))
        return
    missing, unexpected = model.load_state_dict(load_file(folder / "model.safetensors"), strict=False)
    missing = [k for k in missing if not _is_tied(model, k, set(missing))]  # save_pretrained drops tied copies
    if unexpected or missing:
        raise UserError(f"checkpoint {folder} does not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}")


def restore_training_state(state: dict[str, Any], scheduler: Any, scaler: torch.amp.GradScaler, rank: int = 0) -> dict[str, Any]:
    """Put the schedule, the scaler and this rank's RNG back as `state` (see `read_training_state`) saved them; returns
    the saved loop state. The weights and the optimizer are the training strategy's to load."""
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    per_rank = state.get("rng_per_rank") or []
    _set_rng_state(per_rank[rank] if rank < len(per_rank) else state["rng"])
    return dict(state["loop"])
