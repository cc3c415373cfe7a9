"""A run folder: the names of the files in it, and the lock that keeps a second process from writing it."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from llmft.errors import UserError

LOCK_NAME = ".llmft.lock"
HYDRA_FILES = {"config.yaml", "hydra.yaml", "overrides.yaml"}  # what Hydra writes into .hydra/ at a job's start
CHECKPOINT_NAMES = ("best", "last")  # the checkpoints a verb can name (`checkpoint=best`); anything else is a folder
STEP_PREFIX = "step-"  # checkpoints/step-<N>: older resumable checkpoints (trainer.keep_last > 1)
COMPLETE = ".complete"  # written last into a save's temp folder: everything in it is written and synced


@dataclass
class RunFolder:
    """One run's folder: the one place that spells the path of every file in it, and the lock that keeps a second process
    from writing it. `lock()` makes this process its only writer until `unlock()` or the process ends.

    The lock is `fcntl.flock` on a file in the folder: the kernel drops it when the holder dies (even by kill -9), so a
    stale lock never blocks a resume. The file holds the holder's pid and host, for the message a second process prints.
    """

    root: Path
    _fd: Optional[int] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @classmethod
    def of_checkpoints(cls, checkpoints: Path) -> "RunFolder":
        """The run folder whose `checkpoints` folder this is."""
        return cls(Path(checkpoints).parent)

    @classmethod
    def runs_under(cls, runs_root: Path) -> list["RunFolder"]:
        """The runs under `runs_root` (Hydra's `<date>/<time>` folders) that saved a checkpoint."""
        return [cls(p.parent) for p in Path(runs_root).glob("*/*/checkpoints")]

    # -- files of the run -------------------------------------------------------------------------------------------
    @property
    def saved_config(self) -> Path:
        """The composed config as run (Hydra writes it at the job's start)."""
        return self.root / ".hydra" / "config.yaml"

    @property
    def saved_overrides(self) -> Path:
        """The overrides the job was started with (Hydra writes it)."""
        return self.root / ".hydra" / "overrides.yaml"

    @property
    def manifest(self) -> Path:
        return self.root / "run.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def splits(self) -> Path:
        """The rows carved off train for eval/test (llmft.data.splits)."""
        return self.root / "splits.json"

    @property
    def eval_json(self) -> Path:
        """The final metrics: written last by `llmft train` (a run with it is finished), and by `llmft eval`."""
        return self.root / "eval.json"

    @property
    def loss_plot(self) -> Path:
        return self.root / "loss.png"

    def samples(self, role: str) -> Path:
        """The (input, reference, prediction) rows of a generation-based eval of `role` (eval or test)."""
        return self.root / f"generations-{role}.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    # -- checkpoints ------------------------------------------------------------------------------------------------
    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last"

    def named_checkpoint(self, name: str) -> Optional[Path]:
        """`best` or `last` as a folder of this run; None for any other name (a folder the user gives)."""
        return self.checkpoints / name if name in CHECKPOINT_NAMES else None

    def step_checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"{STEP_PREFIX}{step:07d}"

    def step_checkpoints(self) -> list[Path]:
        """The older resumable checkpoints, oldest first."""
        return sorted(self.checkpoints.glob(f"{STEP_PREFIX}*"))

    def partial_saves(self) -> list[Path]:
        """Temp folders of saves a crash interrupted (see `swap_temp_prefix`)."""
        return sorted(self.checkpoints.glob(".*.tmp-*"))

    def swap_leftovers_of_last(self) -> list[Path]:
        """What a save of `last` may leave beside it (its temp folders and the copy it replaced)."""
        return sorted(self.checkpoints.glob(f".{self.last.name}.*"))

    # -- inside any checkpoint folder (best, last, step-N, or one the user names) -----------------------------------
    @staticmethod
    def trainer_state(checkpoint: Path) -> Path:
        """Optimizer, scheduler, scaler, RNG and loop state: what makes a checkpoint resumable."""
        return Path(checkpoint) / "trainer_state.pt"

    @staticmethod
    def loop_state(checkpoint: Path) -> Path:
        """The loop's position, readable without torch."""
        return Path(checkpoint) / "loop_state.json"

    @staticmethod
    def complete_marker(folder: Path) -> Path:
        return Path(folder) / COMPLETE

    @staticmethod
    def temp_file(path: Path) -> Path:
        """Where a rewrite of the file `path` is written before it replaces it (a kill keeps the old file)."""
        return Path(path).with_name(f".{Path(path).name}.tmp")

    # -- an atomic folder swap's side folders (see llmft.runs.checkpoint.atomic_write_dir) --------------------------
    @staticmethod
    def swap_temp_prefix(target: Path) -> str:
        """The name prefix of the temp folders a save of `target` is written into before the swap."""
        return f".{Path(target).name}.tmp-"

    @staticmethod
    def swap_temps(target: Path) -> list[Path]:
        return list(Path(target).parent.glob(f"{RunFolder.swap_temp_prefix(target)}*"))

    @staticmethod
    def swap_old(target: Path) -> Path:
        """Where the folder being replaced waits during the swap."""
        return Path(target).parent / f".{Path(target).name}.old"

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_NAME

    def lock(self) -> "RunFolder":
        """Hold the folder, or raise a one-line UserError naming the process that holds it."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o666)  # 0o666: the umask decides, as for every run file
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as ex:
            holder = os.pread(fd, 300, 0).decode(errors="replace").strip()
            os.close(fd)
            if ex.errno in (errno.EAGAIN, errno.EACCES):
                raise UserError(
                    f"run folder {self.root} is in use by another llmft process ({holder or 'holder unknown'}): one process "
                    "writes a run folder at a time; wait for it to end (or stop it) and resume, or train into another folder"
                ) from ex
            print(f"warning: cannot lock {self.root} ({ex.strerror}); make sure no other process writes it", file=sys.stderr)
            return self  # a file system without locks (some network mounts): go on unprotected, as before
        since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}, since {since}\n".encode(), 0)
        self._fd = fd
        return self

    def held(self) -> bool:
        """True while another process holds the folder (asks the kernel; takes nothing)."""
        import fcntl

        if not self.lock_file.is_file():
            return False
        fd = os.open(self.lock_file, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as ex:
            return ex.errno in (errno.EAGAIN, errno.EACCES)
        finally:
            os.close(fd)  # drops the probe's lock, if it got one
        return False

    def holds_only_hydra_files(self) -> bool:
        """True when the folder holds only what Hydra writes as a job starts (`.hydra/`, an empty job log): nothing of
        an earlier run or of the user's, so a run that fails before it has written anything may remove it."""
        if not self.root.is_dir():
            return False
        for entry in self.root.iterdir():
            if entry.is_symlink():
                return False
            if entry.name == ".hydra" and entry.is_dir():
                if not all(p.name in HYDRA_FILES and p.is_file() and not p.is_symlink() for p in entry.iterdir()):
                    return False
            elif not (entry.suffix == ".log" and entry.is_file() and entry.stat().st_size == 0):
                return False
        return True

    def started(self) -> bool:
        """True once the run logged, saved or scored anything."""
        return self.metrics.exists() or self.checkpoints.exists() or self.eval_json.exists()

    def remove_unstarted(self) -> None:
        """Remove the folder of a run that failed before it logged, saved or scored anything, under the lock (never while
        another process holds it); its date folder (Hydra's `%Y-%m-%d`) too, when left empty."""
        try:
            self.lock()
        except UserError:
            return
        try:
            if not self.started():
                shutil.rmtree(self.root, ignore_errors=True)
        finally:
            self.unlock()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", self.root.parent.name):
            with contextlib.suppress(OSError):  # rmdir removes only an empty folder: another run's folder keeps it
                self.root.parent.rmdir()

    def unlock(self) -> None:
        """Let the folder go (the file stays: removing it would let two processes lock two different files)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "RunFolder":
        return self.lock()

    def __exit__(self, *exc: object) -> None:
        self.unlock()
