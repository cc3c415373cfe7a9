"""The preference families under torchrun and after a crash: 2 gloo processes with batch B follow one process with
batch 2B (train log with its rewards, gathered eval metrics) for task=dpo (LoRA: the reference is the adapter-disabled
policy inside DDP) and task=reward; a DPO run killed with SIGKILL resumes to the unbroken run's records, bit for bit."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from conftest import only_run_dir, run_cli
from test_distributed import _torchrun
from test_resume import _start, _wait_for_step

BASE = [
    "model=tiny-gpt2",
    "model.dropout=0.0",
    "trainer.progress=false",
    "task.data.max_train_samples=48",
    "task.data.max_eval_samples=21",
    "trainer.eval_batch_size=4",
    "trainer.max_steps=4",
    "trainer.log_every=1",
    "trainer.eval_every=2",
    "optimizer.lr=3e-3",
]
FAMILIES = {"dpo": ["task=dpo", "finetune=lora", "finetune.lora_r=4"], "reward": ["task=reward"]}


def _records(run: Path) -> list[dict]:
    """Every record less its timings (samples/s differ between any two runs)."""
    return [
        {k: v for k, v in json.loads(line).items() if not k.endswith("per_s") and "time" not in k}
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]


@pytest.mark.slow  # two runs, one of them two torchrun processes (~40 s on 2 cores)
@pytest.mark.parametrize("family", ["dpo", "reward"])
def test_two_processes_log_and_evaluate_as_one(tmp_path, family):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    single.mkdir(), ddp.mkdir()
    run_cli(["train", *FAMILIES[family], *BASE, "trainer.batch_size=8"], cwd=single)
    proc = _torchrun([*FAMILIES[family], *BASE, "trainer.batch_size=4"], ddp)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-4000:]
    one, two = (_records(only_run_dir(d / "outputs")) for d in (single, ddp))
    assert len(one) == len(two) and any("train/rewards/margins" in r for r in one)
    for a, b in zip(one, two):
        assert a.keys() == b.keys()
        for key, value in a.items():
            assert b[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key  # all-reduce order: float noise
    evals = [r for r in two if "eval/pairs" in r]
    assert evals and all(r["eval/pairs"] == 21 for r in evals)  # every pair once: the uneven shards are not padded
    m1, m2 = (json.loads((only_run_dir(d / "outputs") / "eval.json").read_text())["metrics"] for d in (single, ddp))
    for key, value in m1.items():
        assert m2[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


RESUMED = [
    "task=dpo",
    "model=tiny-gpt2",
    "model.dropout=0.0",
    "trainer.progress=false",
    "task.data.max_train_samples=64",
    "task.data.max_eval_samples=16",
    "trainer.batch_size=4",
    "trainer.max_steps=24",
    "trainer.log_every=1",
    "trainer.eval_every=8",
    "trainer.save_every=5",
    "optimizer.lr=1e-3",
    "task.precompute_reference=true",
]


@pytest.mark.slow  # three runs of 24 steps (~30 s)
def test_dpo_kill_9_then_resume_matches_an_unbroken_run(tmp_path):
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    unbroken.mkdir(), broken.mkdir()
    run_cli(["train", *RESUMED], cwd=unbroken)
    reference = only_run_dir(unbroken / "outputs")

    proc = _start(["train", *RESUMED], cwd=broken)
    run = _wait_for_step(broken, 12, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads((run / "checkpoints" / "last" / "loop_state.json").read_text())["step"]
    assert 5 <= killed_at < 24  # the kill landed mid-run, after at least one checkpoint
    stored = (run / "reference_logps.pt").stat().st_mtime_ns

    run_cli(["train", f"trainer.resume={run}", "trainer.progress=false"], cwd=broken)
    assert (run / "reference_logps.pt").stat().st_mtime_ns == stored  # read back, not scored again
    assert _records(run) == _records(reference)  # bitwise: losses, rewards, margins, log-probs, lrs and evals
    ours, theirs = (json.loads((r / "eval.json").read_text())["metrics"] for r in (run, reference))
    assert ours == theirs
