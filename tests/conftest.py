"""Shared fixtures: the real CLI as a subprocess, offline, in a temp folder; tiny data sets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Small, fast settings for the tiny random BERT; tests add what they check.
TINY = [
    "model=tiny-bert",
    "task.data.max_train_samples=2048",
    "task.data.max_eval_samples=128",
    "trainer.epochs=2",
    "trainer.batch_size=16",
    "model.dropout=0.0",
    "trainer.progress=false",
    "optimizer.lr=1e-3",
]
FAST = [*TINY[:3], "trainer.epochs=1", "trainer.max_steps=3", "trainer.progress=false"]  # runs, learns nothing


def run_cli(args: list[str], cwd: Path, check: bool = True, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m llmft ARGS` in `cwd`; fails the test with the output when `check` and the exit code is not 0."""
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    full_env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})})
    proc = subprocess.run([sys.executable, "-m", "llmft", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"llmft {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}")
    return proc


def only_run_dir(root: Path) -> Path:
    runs = [p.parent for p in root.glob("**/run.json")]
    assert len(runs) == 1, runs
    return runs[0]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One finished tiny training run, shared by the tests that inspect a run folder."""
    root = tmp_path_factory.mktemp("tiny_run")
    run_cli(["train", *TINY, "trainer.eval_every=32", "trainer.log_every=16"], cwd=root)
    return only_run_dir(root / "outputs")
