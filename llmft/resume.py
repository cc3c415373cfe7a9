"""Exact resume: find the run to continue, refuse changed configs, and cut its log back to the checkpoint."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from llmft.errors import UserError

RESUME_KEY = "trainer.resume"
ALLOWED_WITH_RESUME = ("trainer.resume", "trainer.progress", "trainer.device")


def is_resumable(run_dir: Path) -> bool:
    return (run_dir / "checkpoints" / "last" / "trainer_state.pt").is_file()


def is_finished(run_dir: Path) -> bool:
    return (run_dir / "eval.json").is_file()


def find_run(resume: str, runs_root: Path) -> Optional[Path]:
    """The run folder to continue: an explicit folder, or for `auto` the newest unfinished resumable run
    under `runs_root` (None when there is none: start fresh)."""
    if resume != "auto":
        run_dir = Path(resume).expanduser()
        if not run_dir.is_dir():
            raise UserError(f"trainer.resume: run folder not found: {resume}")
        if not is_resumable(run_dir):
            raise UserError(f"trainer.resume: {resume} has no checkpoints/last/trainer_state.pt to resume from")
        if is_finished(run_dir):
            raise UserError(f"trainer.resume: {resume} already finished (it has eval.json); start a new run instead")
        return run_dir
    candidates = [p.parents[2] for p in runs_root.glob("*/*/checkpoints/last/trainer_state.pt")]
    unfinished = [p for p in candidates if not is_finished(p)]
    return max(unfinished, key=lambda p: p.stat().st_mtime) if unfinished else None


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
    """Drop log records written after the checkpoint, so the resumed log reads like an unbroken one."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept))


def clean_partial_saves(checkpoints: Path) -> None:
    """Remove temp folders a crash left behind mid-save (the committed checkpoints are untouched)."""
    for partial in checkpoints.glob(".*.tmp-*"):
        shutil.rmtree(partial, ignore_errors=True)


def note_resume(run_dir: Path, step: int) -> None:
    manifest_path = run_dir / "run.json"
    if not manifest_path.is_file():
        return
    manifest = json.loads(manifest_path.read_text())
    manifest.setdefault("resumes", []).append({"at_step": step, "time": datetime.now(timezone.utc).isoformat()})
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
