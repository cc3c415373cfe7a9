"""The loop's promises that an audit found broken: collectives on the process's device, fp16 skipped steps that do not
advance the schedule, the selection direction of a loss, max_steps as the run's length, the logged rate, honest
samples/s and tokens/s, and a resumed log that equals an unbroken one when the checkpoint is between log records."""

from __future__ import annotations

import json
import math
import signal

import pytest
import torch

from conftest import FAST, only_run_dir, run_cli
from test_loop import TokenLoss, _collate, _rows

from llmft.config import MetricMode, OptimizerConfig, OptimizerName, PrecisionMode, SchedulerConfig, SchedulerName, TrainerConfig
from llmft.data.loading import make_loader
from llmft.engine.distributed import Dist
from llmft.engine.loop import Hooks, Selection, StepParts, batch_volume, fit
from llmft.engine.optim import build_optimizer, build_scheduler
from llmft.engine.precision import Precision
from llmft.reporting.console import MetricsLog
from conftest import RecordingSink


def _records(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_every_collective_gets_a_tensor_on_the_process_device(monkeypatch):
    """NCCL has no CPU collectives: whatever the caller hands `Dist`, the all-reduce sees the process's device."""
    seen = []
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda tensor, *a, **k: seen.append(tensor.device))
    dist = Dist(rank=0, world=2, device=torch.device("meta"))
    dist.sum(torch.ones(3))  # a CPU tensor
    dist.sum(torch.zeros((), device="meta"))
    with pytest.raises(Exception):
        dist.sum_number(1.0)  # a meta tensor has no value to read back; what matters is where the collective ran
    assert seen == [torch.device("meta")] * 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: on a CPU every tensor is on the one device")
def test_the_loop_hands_collectives_only_cuda_tensors_on_a_gpu(monkeypatch):
    seen = []
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda tensor, *a, **k: seen.append(tensor.device))
    monkeypatch.setattr(
        torch.distributed, "all_gather_object", lambda out, obj, *a, **k: out.__setitem__(slice(None), [obj] * len(out))
    )
    device = torch.device("cuda")
    model = torch.nn.Linear(4, 1).to(device)
    cfg = TrainerConfig(epochs=1, batch_size=2, progress=False, log_every=1, max_grad_norm=None)
    opt = build_optimizer(OptimizerConfig(name=OptimizerName.sgd, lr=0.1, weight_decay=0.0), model)
    precision = Precision(PrecisionMode.fp32, device, None)
    parts = StepParts(
        model,
        TokenLoss(),
        opt,
        build_scheduler(SchedulerConfig(), opt, 4),
        precision.grad_scaler(),
        precision,
        cfg,
        Dist(rank=0, world=2, device=device),
    )
    loader = make_loader(_rows(), 2, _collate, shuffle=False, seed=0, rank=0, world=2)
    fit(
        parts,
        loader,
        Selection("accuracy", MetricMode.max),
        Hooks(evaluate=lambda: {"accuracy": 0.0}, on_best=lambda s, m: None),
        2,
    )
    assert seen and all(d.type == "cuda" for d in seen)


class OverflowOnSecondStep(TokenLoss):
    def __init__(self):
        self.calls = 0

    def loss_sum(self, model, batch):
        self.calls += 1
        loss = super().loss_sum(model, batch)
        return loss * float("inf") if self.calls == 2 else loss


def test_a_step_the_grad_scaler_skips_does_not_advance_the_schedule():
    """fp16: an overflowing step is skipped by the GradScaler; like transformers' Trainer, the LR schedule stays put."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    cfg = TrainerConfig(epochs=1, batch_size=2, progress=False, log_every=1, max_grad_norm=1.0)
    opt = build_optimizer(OptimizerConfig(name=OptimizerName.sgd, lr=0.1, momentum=0.0, weight_decay=0.0, fused=False), model)
    sched = build_scheduler(SchedulerConfig(name=SchedulerName.linear), opt, 4)
    precision = Precision(PrecisionMode.fp16, torch.device("cpu"), torch.float16)  # the GradScaler runs on CPU too
    scaler = torch.amp.GradScaler("cpu", enabled=True, init_scale=1024.0)
    log = RecordingSink()
    hooks = Hooks(evaluate=lambda: {"accuracy": 0.0}, on_best=lambda s, m: None, record=MetricsLog(None, log).write)
    parts = StepParts(model, OverflowOnSecondStep(), opt, sched, scaler, precision, cfg, Dist())
    state = fit(parts, make_loader(_rows(), 2, _collate, shuffle=False, seed=0), Selection("accuracy", MetricMode.max), hooks, 4)
    assert state.step == 4 and state.skipped_steps == 1
    assert sched.last_epoch == 3  # four steps, one skipped
    lrs = [r["train/lr"] for r in log.records if "train/lr" in r]
    assert lrs == pytest.approx([0.1, 0.075, 0.075, 0.05])  # the rate each step used; the skipped one did not move it
    assert [r["train/grad_scale"] for r in log.records if "train/lr" in r][1] == 512.0
    assert "train/loss" not in log.records[1]  # the overflowed step's inf loss is not averaged into the log
    assert all(math.isfinite(r["train/loss"]) for r in log.records if "train/loss" in r)
    assert torch.isfinite(model.weight).all()


def test_loss_selection_max_steps_logged_rate_and_throughput_through_the_cli(tmp_path):
    """One tiny run: `task.select_metric=loss` keeps the lowest loss; `max_steps` beyond an epoch repeats epochs; the
    logged rate is the one the step used; warmup_ratio rounds up; samples/s and tokens/s are both logged."""
    args = [
        *[a for a in FAST if not a.startswith(("trainer.max_steps", "task.data.max_"))],
        "task.data.max_train_samples=32",
        "trainer.batch_size=16",
        "trainer.max_steps=5",
        "trainer.eval_every=1",
        "trainer.log_every=1",
        "task.select_metric=loss",
        "scheduler.warmup_ratio=0.29",
        "optimizer.lr=1e-3",
        "task.data.max_eval_samples=32",
    ]
    run_cli(["train", *args], cwd=tmp_path)
    run = only_run_dir(tmp_path / "outputs")
    records = _records(run)
    train = [r for r in records if "train/loss" in r]
    evals = [r for r in records if "eval/loss" in r]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5]  # 2 steps an epoch, 3 epochs begun
    assert max(r["epoch"] for r in train) == 2
    summary = json.loads((run / "eval.json").read_text())
    assert summary["select_mode"] == "min" and summary["steps"] == 5
    best = min(evals, key=lambda r: r["eval/loss"])
    assert summary["best_step"] == best["step"] and summary["select_value"] == pytest.approx(best["eval/loss"])
    plan = json.loads((run / "run.json").read_text())["plan"]
    assert plan["warmup_steps"] == 2 and plan["optimizer_steps"] == 5  # ceil(0.29 * 5)
    assert [r["train/lr"] for r in train[:3]] == pytest.approx([0.0, 1e-3 / 2, 1e-3])  # warmup 2: step/warmup (transformers')
    for r in train:
        assert r["train/tokens_per_s"] > r["train/samples_per_s"] > 0  # tiny-bert rows are many tokens long


def test_batch_volume_counts_rows_tokens_and_packed_examples():
    batch = {
        "input_ids": torch.ones(2, 5, dtype=torch.long),
        "attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]),
        "labels": torch.zeros(2, 5, dtype=torch.long),
    }
    assert batch_volume(batch) == (2, 8)
    ignore = -100
    packed = {
        "input_ids": torch.ones(2, 6, dtype=torch.long),
        "position_ids": torch.tensor([[0, 1, 2, 0, 1, 2], [0, 1, 2, 3, 0, 1]]),  # row 2 ends in a 2-token pad segment
        "labels": torch.tensor([[ignore, 5, 5, ignore, 5, 5], [ignore, 5, 5, 5, ignore, ignore]]),
    }
    assert batch_volume(packed) == (3, 10)


SIGTERM_DURING_STEP_5 = """
import os, signal
import llmft.engine.loop as loop
_step = loop.optimizer_step
def _step_then_term(parts, group, state):
    out = _step(parts, group, state)
    if state.step == 4:  # step 5 is under way: the run stops after it, between two log records (every 4 steps)
        os.kill(os.getpid(), signal.SIGTERM)
    return out
loop.optimizer_step = _step_then_term
"""


@pytest.mark.slow  # seconds-long; the default suite stays under 10 minutes on 2 cores
def test_resume_between_log_records_gives_the_unbroken_log(tmp_path):
    from test_resume import _start

    args = [
        "model=tiny-bert",
        "task.data.max_train_samples=128",
        "task.data.max_eval_samples=32",
        "trainer.batch_size=16",
        "trainer.max_steps=12",
        "trainer.log_every=4",
        "trainer.eval_every=6",
        "trainer.progress=false",
        "optimizer.lr=1e-3",
    ]
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    unbroken.mkdir(), broken.mkdir()
    run_cli(["train", *args], cwd=unbroken)
    proc = _start(["train", *args], cwd=broken, prelude=SIGTERM_DURING_STEP_5)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    run = only_run_dir(broken / "outputs")
    assert json.loads((run / "checkpoints" / "last" / "loop_state.json").read_text())["step"] == 5
    run_cli(["train", f"trainer.resume={run}", "trainer.progress=false"], cwd=broken)

    def curve(folder):
        return [(r["step"], r.get("train/loss"), r.get("train/lr"), r.get("eval/loss")) for r in _records(folder)]

    assert curve(run) == curve(only_run_dir(unbroken / "outputs"))  # the record at step 8 averages steps 5-8 in both


def test_a_bf16_checkpoint_trains_on_fp32_weights(tmp_path, tiny_run):
    """transformers 5 loads a checkpoint in its saved dtype; training must start from fp32 master weights anyway."""
    from safetensors import safe_open
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    best = tiny_run / "checkpoints" / "best"
    half = tmp_path / "bf16-model"
    AutoModelForSequenceClassification.from_pretrained(best).to(torch.bfloat16).save_pretrained(half)
    AutoTokenizer.from_pretrained(best).save_pretrained(half)
    run_cli(["train", *FAST, f"model.name_or_path={half}", "trainer.max_steps=1"], cwd=tmp_path)
    with safe_open(only_run_dir(tmp_path / "outputs") / "checkpoints" / "best" / "model.safetensors", "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F32"}
