"""Faults survived, nothing lost: kill -9 and resume equals an unbroken run; a kill during a save keeps the
previous checkpoint; SIGINT saves and says how to resume; a full disk keeps the old checkpoint."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import only_run_dir, run_cli

# dropout stays on (0.1) so the test also proves the RNG state is restored
RUN = [
    "model=tiny-bert",
    "task.data.max_train_samples=512",
    "task.data.max_eval_samples=64",
    "trainer.batch_size=16",
    "trainer.epochs=2",
    "trainer.log_every=1",
    "trainer.eval_every=10",
    "trainer.save_every=7",
    "trainer.progress=false",
    "optimizer.lr=1e-3",
]


def _env():
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return env


def _start(args: list[str], cwd: Path, prelude: str = "") -> subprocess.Popen:
    code = f"import sys\n{prelude}\nfrom llmft.cli import main\nmain(sys.argv[1:])"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_step(cwd: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for log in cwd.glob("outputs/train/*/*/metrics.jsonl"):
            lines = [json.loads(x) for x in log.read_text().splitlines() if x.strip().endswith("}")]
            if any(r["step"] >= step for r in lines):
                return log.parent
        if proc.poll() is not None:
            pytest.fail(f"run ended before step {step}: {proc.stderr.read()[-3000:]}")
        time.sleep(0.02)
    pytest.fail(f"no step {step} within {timeout}s")


def _curve(run: Path) -> tuple[list, list]:
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train = [(r["step"], r["train/loss"], r["train/lr"]) for r in records if "train/loss" in r]
    evals = [(r["step"], r["eval/loss"], r["eval/accuracy"]) for r in records if "eval/loss" in r]
    return train, evals


def test_kill_9_then_resume_matches_an_unbroken_run(tmp_path):
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    unbroken.mkdir(), broken.mkdir()
    run_cli(["train", *RUN], cwd=unbroken)
    reference = only_run_dir(unbroken / "outputs")

    proc = _start(["train", *RUN], cwd=broken)
    run = _wait_for_step(broken, 23, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads((run / "checkpoints" / "last" / "loop_state.json").read_text())["step"]
    assert 7 <= killed_at < 64  # the kill landed mid-run, after at least one checkpoint

    run_cli(["train", f"trainer.resume={run}", "trainer.progress=false"], cwd=broken)
    assert _curve(run) == _curve(reference)  # bitwise: same losses, lrs and eval metrics at every step
    ours, theirs = (json.loads((r / "eval.json").read_text())["metrics"] for r in (run, reference))
    assert ours["accuracy"] == theirs["accuracy"] and ours["loss"] == theirs["loss"]
    assert json.loads((run / "run.json").read_text())["resumes"][0]["at_step"] == killed_at


KILL_ON_SECOND_LAST_SAVE = """
import os, signal
import llmft.runs.checkpoint as checkpoint
_fsync, _saves = checkpoint._fsync_tree, []
def _fsync_then_die(folder):
    _fsync(folder)
    if folder.name.startswith(".last.tmp-"):
        _saves.append(folder)
        if len(_saves) == 2:  # written and synced, not yet swapped in
            os.kill(os.getpid(), signal.SIGKILL)
checkpoint._fsync_tree = _fsync_then_die
"""


def test_kill_during_a_save_keeps_the_previous_checkpoint(tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    proc = _start(["train", *RUN], cwd=tmp_path, prelude=KILL_ON_SECOND_LAST_SAVE)
    proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    run = next(tmp_path.glob("outputs/train/*/*"))
    last = run / "checkpoints" / "last"
    assert json.loads((last / "loop_state.json").read_text())["step"] == 7  # the first save, intact
    assert list((run / "checkpoints").glob(".last.tmp-*"))  # the half-done second save, never swapped in
    torch.load(last / "trainer_state.pt", weights_only=True)
    AutoModelForSequenceClassification.from_pretrained(last)

    run_cli(["train", f"trainer.resume={run}", "trainer.progress=false"], cwd=tmp_path)
    assert not list((run / "checkpoints").glob(".last.tmp-*"))
    assert json.loads((run / "eval.json").read_text())["steps"] == 64


def test_sigint_saves_says_how_to_resume_and_auto_resumes(tmp_path):
    proc = _start(["train", *RUN, "trainer.keep_last=2"], cwd=tmp_path)
    run = _wait_for_step(tmp_path, 3, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT
    assert f"trainer.resume={run}" in err and "Traceback" not in err
    stopped_at = json.loads((run / "checkpoints" / "last" / "loop_state.json").read_text())["step"]
    assert stopped_at >= 3

    run_cli(["train", "trainer.resume=auto", "trainer.progress=false"], cwd=tmp_path)
    steps = [r["step"] for r in (json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()) if "train/loss" in r]
    assert steps == list(range(1, 65))  # no step lost, none repeated
    assert len(list((run / "checkpoints").glob("step-*"))) == 1  # keep_last=2: last + one older


def test_resume_refuses_changed_config_and_finished_runs(tmp_path, tiny_run):
    proc = run_cli(["train", f"trainer.resume={tiny_run}"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "already finished" in proc.stderr
    proc = run_cli(["train", f"trainer.resume={tmp_path}"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "no checkpoints/last/trainer_state.pt" in proc.stderr


def test_resume_with_other_overrides_is_refused(tmp_path):
    from llmft.errors import UserError
    from llmft.runs.resume import check_overrides

    check_overrides(["trainer.resume=auto", "trainer.progress=false", "hydra.run.dir=x"])
    with pytest.raises(UserError, match="optimizer.lr=1"):
        check_overrides(["trainer.resume=auto", "optimizer.lr=1"])


def test_disk_full_keeps_the_previous_checkpoint(tmp_path):
    from llmft.runs.checkpoint import atomic_write_dir
    from llmft.errors import UserError

    target = tmp_path / "last"
    atomic_write_dir(target, lambda d: (d / "weights").write_text("good"))

    def full_disk(folder: Path) -> None:
        (folder / "weights").write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserError, match="disk full"):
        atomic_write_dir(target, full_disk)
    assert (target / "weights").read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_sigterm_is_a_stop_request_too():
    from llmft.engine.loop import stop_requests

    with stop_requests() as requested:
        signal.raise_signal(signal.SIGTERM)  # handled: the loop stops after its current step
    assert requested == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored after the loop
