"""A run folder: the names of the files in it, and the lock that keeps a second process from writing it."""

from __future__ import annotations

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


@dataclass
class RunFolder:
    """One run's folder. `lock()` makes this process its only writer until `unlock()` or the process ends.

    The lock is `fcntl.flock` on a file in the folder: the kernel drops it when the holder dies (even by kill -9), so a
    stale lock never blocks a resume. The file holds the holder's pid and host, for the message a second process prints.
    """

    root: Path
    _fd: Optional[int] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last"

    @property
    def eval_json(self) -> Path:
        return self.root / "eval.json"

    @property
    def manifest(self) -> Path:
        return self.root / "run.json"

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
            try:
                self.root.parent.rmdir()  # only an empty folder: another run's folder keeps it
            except OSError:
                pass

    def unlock(self) -> None:
        """Let the folder go (the file stays: removing it would let two processes lock two different files)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "RunFolder":
        return self.lock()

    def __exit__(self, *exc: object) -> None:
        self.unlock()
