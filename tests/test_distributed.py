"""torchrun data-parallel through the real CLI: 2 CPU processes (gloo) with batch B follow the loss curve of
one process with batch 2B, on a token-level loss where the ranks see different token counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import only_run_dir, run_cli

RUN = [
    "task=textgen",
    "model=tiny-gpt2",
    "model.dropout=0.0",
    "task.data.max_train_samples=192",
    "task.data.max_eval_samples=32",
    "task.chunk_text=false",  # one row per document: rows of different lengths, so ranks see different token counts
    "trainer.max_steps=6",
    "trainer.log_every=1",
    "trainer.eval_every=3",
    "trainer.progress=false",
    "optimizer.lr=3e-3",
]


def _curve(run: Path) -> tuple[list, list]:
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return ([r["train/loss"] for r in records if "train/loss" in r], [r["eval/loss"] for r in records if "eval/loss" in r])


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The reference: one process with the global batch (8), on the plain full-logits loss (the torchrun runs take the
    chunked one: engine/token_loss.py)."""
    cwd = tmp_path_factory.mktemp("single")
    run_cli(["train", *RUN, "trainer.batch_size=8", "task.chunked_loss=false"], cwd=cwd)
    return only_run_dir(cwd / "outputs")


@pytest.mark.parametrize("strategy,accum", [("ddp", 1), ("ddp", 2), ("fsdp", 1), ("fsdp", 2)])
def test_two_processes_match_one_with_the_same_global_batch(tmp_path, one_process, strategy, accum):
    """2 gloo processes x batch 4/accum x accum micro-batches follow 1 process x batch 8, under DDP and FSDP, with and
    without gradient accumulation (each micro-batch but the last skips the gradient sync), the chunked loss equal to
    the plain one."""
    proc = _torchrun(
        [*RUN, f"trainer.batch_size={4 // accum}", f"trainer.grad_accum_steps={accum}", f"trainer.strategy={strategy}"], tmp_path
    )
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-4000:]
    two = only_run_dir(tmp_path / "outputs")  # rank 0 alone wrote a run folder
    train_one, eval_one = _curve(one_process)
    train_two, eval_two = _curve(two)
    tolerance = 1e-5 if strategy == "ddp" else 1e-4
    assert len(train_two) == 6
    assert train_two == pytest.approx(train_one, abs=tolerance)
    assert eval_two == pytest.approx(eval_one, abs=tolerance)
    plan = json.loads((two / "run.json").read_text())["plan"]
    assert plan["processes"] == 2 and plan["effective_batch_size"] == 8
    m1, m2 = (json.loads((r / "eval.json").read_text())["metrics"] for r in (one_process, two))
    assert m2["perplexity"] == pytest.approx(m1["perplexity"], rel=1e-4)
    if strategy == "fsdp":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(two / "checkpoints" / "best")  # gathered full weights, plain HF format
        assert sum(p.numel() for p in model.parameters()) == plan["total_parameters"]


@pytest.mark.slow
def test_two_processes_with_accumulation_match_one_on_equal_token_batches(tmp_path):
    """Length-grouped batches of a token-level loss hold equal tokens (data/batches.py): each global step is cut
    before its micro-batches and its rows dealt to the processes in turn, so 2 processes x batch 2 x 2 micro-batches
    train on one process x batch 8's steps."""
    grouped = [*RUN, "trainer.group_by_length=true"]
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    run_cli(["train", *grouped, "trainer.batch_size=8", "task.chunked_loss=false"], cwd=tmp_path / "one")
    proc = _torchrun([*grouped, "trainer.batch_size=2", "trainer.grad_accum_steps=2"], tmp_path / "two")
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-4000:]
    one, two = (only_run_dir(tmp_path / name / "outputs") for name in ("one", "two"))
    assert "equal tokens" in json.loads((two / "run.json").read_text())["plan"]["batches"]
    (train_one, eval_one), (train_two, eval_two) = _curve(one), _curve(two)
    assert len(train_two) == 6 and train_two == pytest.approx(train_one, abs=1e-5)
    assert eval_two == pytest.approx(eval_one, abs=1e-5)


def test_sharded_evaluation_gives_single_process_metrics(tmp_path):
    """Each rank scores its shard of eval and test; the gathered metrics (accuracy, F1, ROC-AUC, loss) equal one process's."""
    args = [
        "task=sentiment",
        "model=tiny-bert",
        "model.dropout=0.0",
        "task.data.max_train_samples=64",
        "task.data.max_eval_samples=101",
        "trainer.max_steps=4",
        "trainer.eval_every=2",
        "trainer.progress=false",
        "trainer.eval_batch_size=16",
        "optimizer.lr=1e-7",
    ]  # the two trainings' float noise (~1e-7) must not flip near-tied ROC-AUC pairs: what is
    # compared is the sharded evaluation of (nearly) the same weights
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    single.mkdir(), ddp.mkdir()
    run_cli(["train", *args, "trainer.batch_size=8"], cwd=single)
    proc = _torchrun([*args, "trainer.batch_size=4"], ddp)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-3000:]
    one, two = only_run_dir(single / "outputs"), only_run_dir(ddp / "outputs")
    evals = [[json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines() if "eval/accuracy" in x] for r in (one, two)]
    for a, b in zip(*evals):
        assert b["eval/samples"] == a["eval/samples"] == 101  # every row once: the uneven shards are not padded
        for key in ("eval/accuracy", "eval/f1_macro", "eval/roc_auc", "eval/loss"):
            assert b[key] == pytest.approx(a[key], abs=1e-5)
    m1, m2 = (json.loads((r / "eval.json").read_text())["metrics"] for r in (one, two))
    assert m2["samples"] == m1["samples"]
    assert m2["accuracy"] == pytest.approx(m1["accuracy"]) and m2["roc_auc"] == pytest.approx(m1["roc_auc"], abs=1e-5)


def _torchrun(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "llmft", "train", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow  # three torchrun jobs; CI runs the slow tests too
def test_sigterm_and_resume_under_torchrun_match_an_unbroken_run(tmp_path):
    import signal
    import time

    # dropout on: each rank's RNG stream must come back on resume
    # accumulation on (each micro-batch but the last skips the sync) and log records every 5 steps, so the stop usually
    # falls between two records: each rank's unlogged steps must come back too
    args = [
        *[a for a in RUN if not a.startswith(("model.dropout", "trainer.max_steps", "trainer.log_every"))],
        "trainer.max_steps=16",
        "trainer.save_every=3",
        "trainer.batch_size=2",
        "trainer.grad_accum_steps=2",
        "trainer.log_every=5",
    ]
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    unbroken.mkdir(), broken.mkdir()
    proc = _torchrun(args, unbroken)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-3000:]

    proc = _torchrun(args, broken)
    deadline = time.time() + 300
    while time.time() < deadline:
        logs = list(broken.glob("outputs/train/*/*/metrics.jsonl"))
        if logs and any(json.loads(x).get("step", 0) >= 5 for x in logs[0].read_text().splitlines() if x.endswith("}")):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=300)
    run = only_run_dir(broken / "outputs")
    stopped = json.loads((run / "checkpoints" / "last" / "loop_state.json").read_text())["step"]
    assert 3 <= stopped < 16
    proc = _torchrun([f"trainer.resume={run}", "trainer.progress=false"], broken)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-3000:]
    assert _curve(run) == _curve(only_run_dir(unbroken / "outputs"))


def _stop_after(args: list[str], cwd: Path, step: int) -> Path:
    """Start a 2-process run, SIGTERM it once it has logged `step`; returns its run folder."""
    import signal
    import time

    proc = _torchrun(args, cwd)
    deadline = time.time() + 300
    while time.time() < deadline:
        logs = list(cwd.glob("outputs/train/*/*/metrics.jsonl"))
        if logs and any(json.loads(x).get("step", 0) >= step for x in logs[0].read_text().splitlines() if x.endswith("}")):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=300)
    return only_run_dir(cwd / "outputs")


@pytest.mark.slow
def test_fsdp_run_stopped_and_resumed_matches_an_unbroken_one(tmp_path):
    args = [
        *[a for a in RUN if not a.startswith("trainer.max_steps")],
        "trainer.max_steps=12",
        "trainer.save_every=3",
        "trainer.batch_size=4",
        "trainer.strategy=fsdp",
    ]
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    unbroken.mkdir(), broken.mkdir()
    assert _torchrun(args, unbroken).wait(timeout=600) == 0
    run = _stop_after(args, broken, 4)
    stopped = json.loads((run / "checkpoints" / "last" / "loop_state.json").read_text())["step"]
    assert 3 <= stopped < 12
    proc = _torchrun([f"trainer.resume={run}", "trainer.progress=false"], broken)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-3000:]
    resumed, straight = _curve(run), _curve(only_run_dir(unbroken / "outputs"))
    assert resumed[0] == pytest.approx(straight[0], abs=1e-6) and resumed[1] == pytest.approx(straight[1], abs=1e-6)
