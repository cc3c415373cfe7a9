"""Exact resume: find the run to continue, repair what a kill tore, refuse changed configs and damaged files, and cut
its log back to the checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from llmft.errors import UserError
from llmft.runs.checkpoint import check_weights, recover_swap, resume_fix, swap_leftover
from llmft.runs.run_folder import RunFolder

ALLOWED_WITH_RESUME = ("trainer.resume", "trainer.progress", "trainer.device")


def is_resumable(run_dir: Path) -> bool:
    """A run with checkpoints/last, or with what a kill in the middle of its swap left (see `repair`)."""
    last = RunFolder(run_dir).last
    leftover = swap_leftover(last)
    return RunFolder.trainer_state(last).is_file() or (leftover is not None and RunFolder.trainer_state(leftover).is_file())


def is_finished(run_dir: Path) -> bool:
    return RunFolder(run_dir).eval_json.is_file()


def find_run(resume: str, runs_root: Path) -> Optional[Path]:
    """The run folder to continue: an explicit folder, or for `auto` the newest unfinished resumable run under
    `runs_root` that no other process holds (None when there is none: start fresh)."""
    if resume != "auto":
        run_dir = Path(resume).expanduser()
        if not run_dir.is_dir():
            raise UserError(f"trainer.resume: run folder not found: {resume}")
        if is_finished(run_dir):  # first: a finished run keeps no training state to resume from
            raise UserError(f"trainer.resume: {resume} already finished (it has eval.json); start a new run instead")
        if not is_resumable(run_dir):
            raise UserError(f"trainer.resume: {resume} has no checkpoints/last/trainer_state.pt to resume from")
        return run_dir
    candidates = [run.root for run in RunFolder.runs_under(runs_root)]
    unfinished = [p for p in candidates if is_resumable(p) and not is_finished(p) and not RunFolder(p).held()]
    return max(unfinished, key=lambda p: p.stat().st_mtime) if unfinished else None


def repair(run: RunFolder) -> None:
    """Before a resume, under the run's lock: finish checkpoint swaps a kill interrupted, and refuse damaged files with
    one line naming the file (before hours of training would end in a traceback)."""
    for folder in (run.last, run.best):
        source = recover_swap(folder)
        if source is not None:
            print(
                f"note: {folder} was missing (a kill between the renames of a save); restored from {source.name}", file=sys.stderr
            )
    if run.manifest.is_file():
        try:
            json.loads(run.manifest.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as ex:
            raise UserError(f"{run.manifest} is damaged (not JSON: {ex}); restore it from a copy, or start a new run") from ex
    for folder in (run.last, run.best):
        check_weights(folder, resume_fix(folder))


def check_overrides(overrides: list[str]) -> None:
    """A resumed run continues its own saved config; other overrides would silently change it."""
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if not key.startswith("hydra.") and key not in ALLOWED_WITH_RESUME:
            raise UserError(
                f"'{override}' with trainer.resume: a resumed run continues with its own saved config; "
                f"only {', '.join(ALLOWED_WITH_RESUME)} may be given"
            )


def truncate_metrics(path: Path, step: int) -> None:
    """Drop log records written after the checkpoint, so the resumed log reads like an unbroken one. A last line a kill
    tore in half is dropped too; a damaged line elsewhere is refused naming it."""
    if not path.is_file():
        return
    lines = [(number, line) for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if line.strip()]
    kept = []
    for i, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
            record_step = int(record["step"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as ex:
            if i == len(lines) - 1:
                print(f"note: dropped the torn last line of {path} (the run was killed while writing it)", file=sys.stderr)
                break
            raise UserError(f"{path}:{number} is damaged (not a metrics record); delete that line and resume") from ex
        if record_step <= step:
            kept.append(line)
    tmp = RunFolder.temp_file(path)
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)  # a kill during the rewrite keeps the old log


def clean_partial_saves(checkpoints: Path) -> None:
    """Remove temp folders a crash left behind mid-save in a run's `checkpoints` (the committed checkpoints are untouched)."""
    for partial in RunFolder.of_checkpoints(checkpoints).partial_saves():
        shutil.rmtree(partial, ignore_errors=True)


def note_resume(run_dir: Path, step: int) -> None:
    manifest_path = RunFolder(run_dir).manifest
    if not manifest_path.is_file():
        return
    manifest = json.loads(manifest_path.read_text())
    manifest.setdefault("resumes", []).append({"at_step": step, "time": datetime.now(timezone.utc).isoformat()})
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
