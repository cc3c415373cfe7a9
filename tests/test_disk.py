"""What a run leaves on disk: weights only in checkpoints/best, the resumable state only in checkpoints/last (and none
once a `trainer.keep_last=0` run finishes), no folder from a run that failed before its first step, and never a
deleted checkpoint or folder that a failed or interrupted run, or an earlier run, still needs."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from conftest import FAST, cli, only_run_dir

STEPS = [
    "model=tiny-bert",
    "task.data.max_train_samples=64",
    "task.data.max_eval_samples=16",
    "trainer.batch_size=16",
    "trainer.max_steps=4",
    "trainer.eval_every=2",
    "trainer.log_every=1",
    "trainer.progress=false",
]


def _stop_at(monkeypatch: pytest.MonkeyPatch, step: int, how: str) -> None:
    """Stop the loop after optimizer step `step`: a SIGTERM (the loop saves and exits 143) or a crash (an exception)."""
    from llmft.engine import loop

    real = loop.optimizer_step

    def step_then_stop(parts, group, state):
        out = real(parts, group, state)
        if state.step + 1 == step:  # this call is step `step`; the loop counts it after we return
            if how == "crash":
                raise RuntimeError("injected crash")
            signal.raise_signal(signal.SIGTERM)  # the loop's handler: finish this step, save, exit
        return out

    monkeypatch.setattr(loop, "optimizer_step", step_then_stop)


def test_a_finished_run_keeps_weights_but_no_optimizer_state(tiny_run):
    best, last = tiny_run / "checkpoints" / "best", tiny_run / "checkpoints" / "last"
    assert (best / "model.safetensors").is_file() and not list(best.glob("*.pt")) and not list(best.glob("*optim*"))
    assert (last / "model.safetensors").is_file() and not (last / "trainer_state.pt").exists()  # nothing resumes it
    proc = cli(["train", f"trainer.resume={tiny_run}"], cwd=tiny_run.parent, check=False)
    assert proc.returncode == 2 and "already finished" in proc.stderr


def test_keep_last_0_keeps_no_training_state_after_a_finished_run(tmp_path):
    cli(["train", *FAST, "trainer.keep_last=0"], cwd=tmp_path)
    run = only_run_dir(tmp_path / "outputs")
    assert (run / "eval.json").is_file() and (run / "checkpoints" / "best" / "model.safetensors").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best"]
    proc = cli(["eval", f"run={run}"], cwd=tmp_path)
    assert "accuracy" in proc.stdout


def test_keep_last_0_run_interrupted_keeps_last_and_resumes(tmp_path, monkeypatch):
    _stop_at(monkeypatch, 2, "term")
    proc = cli(["train", *STEPS, "trainer.keep_last=0"], cwd=tmp_path, check=False)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-2000:]
    run = only_run_dir(tmp_path / "outputs")
    assert json.loads((run / "checkpoints" / "last" / "loop_state.json").read_text())["step"] == 2
    monkeypatch.undo()
    cli(["train", f"trainer.resume={run}", "trainer.progress=false"], cwd=tmp_path)
    assert json.loads((run / "eval.json").read_text())["steps"] == 4
    assert not (run / "checkpoints" / "last").exists()  # finished: keep_last=0 drops it now


def test_keep_last_0_run_that_crashes_keeps_its_last_checkpoint(tmp_path, monkeypatch):
    _stop_at(monkeypatch, 3, "crash")
    proc = cli(["train", *STEPS, "trainer.keep_last=0", "trainer.save_every=2"], cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "injected crash" in proc.stderr
    run = only_run_dir(tmp_path / "outputs")
    assert json.loads((run / "checkpoints" / "last" / "loop_state.json").read_text())["step"] == 2
    state = torch.load(run / "checkpoints" / "last" / "trainer_state.pt", weights_only=True)  # unfinished: resumable
    assert state["optimizer"]["state"] and {"scheduler", "scaler", "rng", "loop"} <= set(state)


def _bad_data(tmp_path: Path) -> str:
    (tmp_path / "bad.csv").write_text("review,stars\ngreat,5\nawful,1\n")
    return f"task.data.path={tmp_path / 'bad.csv'}"


@pytest.mark.parametrize("mistake", ["data", "config"])
def test_a_run_that_fails_before_its_first_step_leaves_no_folder(tmp_path, mistake):
    bad = _bad_data(tmp_path) if mistake == "data" else "trainer.keep_last=-1"
    proc = cli(["train", *FAST, bad], cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert list((tmp_path / "outputs" / "train").iterdir()) == []  # neither the run folder nor its date folder


def test_a_failing_run_never_removes_a_folder_with_earlier_content(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("an earlier run's file, or the user's")
    proc = cli(["train", *FAST, _bad_data(tmp_path), f"hydra.run.dir={mine}"], cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (mine / "notes.txt").read_text() == "an earlier run's file, or the user's"
