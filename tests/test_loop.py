"""The training loop on its own: accumulation equals the full batch, clipping, early stopping, non-finite losses."""

from __future__ import annotations

import pytest
import torch

from llmft.config import (
    MetricMode,
    NonFinite,
    OptimizerConfig,
    OptimizerName,
    PrecisionMode,
    SchedulerConfig,
    SchedulerName,
    TrainerConfig,
)
from llmft.data.loading import make_loader
from llmft.engine.distributed import Dist
from llmft.engine.loop import Hooks, NonFiniteLoss, Selection, StepParts, fit
from llmft.engine.optim import build_optimizer, build_scheduler
from llmft.engine.precision import resolve_precision
from llmft.reporting.console import MetricsLog
from conftest import RecordingSink


class TokenLoss:
    """A token-level loss: each row has a different number of supervised positions (mask)."""

    def count(self, batch):
        return int(batch["mask"].sum())

    def loss_sum(self, model, batch):
        per_token = (model(batch["x"]).squeeze(-1) - batch["y"]) ** 2
        return (per_token * batch["mask"]).sum()


def _rows(n=8, scale=1.0):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, 4, generator=g)
    y = torch.randn(n, 6, generator=g) * scale
    mask = (torch.rand(n, 6, generator=g) > 0.4).float()
    mask[:3, 3:] = 0  # the first rows have far fewer supervised tokens
    return [{"x": x[i], "y": y[i], "mask": mask[i]} for i in range(n)]


def _collate(rows):
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


def _fit(rows, batch_size, accum=1, max_grad_norm=None, scores=None, steps=1, nonfinite=NonFinite.stop, loss=None, **trainer):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    cfg = TrainerConfig(
        epochs=1,
        batch_size=batch_size,
        grad_accum_steps=accum,
        max_grad_norm=max_grad_norm,
        progress=False,
        log_every=1,
        nonfinite=nonfinite,
        **trainer,
    )
    opt = build_optimizer(OptimizerConfig(name=OptimizerName.sgd, lr=0.1, momentum=0.0, weight_decay=0.0), model)
    sched = build_scheduler(SchedulerConfig(name=SchedulerName.constant), opt, steps)
    precision = resolve_precision(PrecisionMode.fp32, torch.device("cpu"))
    loader = make_loader(rows, batch_size, _collate, shuffle=False, seed=0)
    scores = iter(scores or [0.0] * 100)
    saved: list[int] = []
    sink = RecordingSink()
    hooks = Hooks(
        evaluate=lambda: {"accuracy": next(scores)},
        on_best=lambda step, m: saved.append(step),
        record=MetricsLog(None, sink).write,
    )
    parts = StepParts(model, loss or TokenLoss(), opt, sched, precision.grad_scaler(), precision, cfg, Dist())
    state = fit(parts, loader, Selection("accuracy", MetricMode.max), hooks, steps)
    return model, sink, state, saved


def test_accumulated_micro_batches_equal_one_full_batch():
    rows = _rows()
    full, full_log, _, _ = _fit(rows, batch_size=8)
    accumulated, acc_log, _, _ = _fit(rows, batch_size=4, accum=2)
    assert torch.allclose(full.weight, accumulated.weight, atol=1e-6)
    assert torch.allclose(full.bias, accumulated.bias, atol=1e-6)
    assert full_log.records[0]["train/loss"] == pytest.approx(acc_log.records[0]["train/loss"], abs=1e-6)
    first, second = _collate(rows[:4]), _collate(rows[4:])
    assert first["mask"].sum() != second["mask"].sum()  # else averaging micro-batch means would agree too


def test_early_stopping_and_best_step():
    _, log, state, saved = _fit(
        _rows(20), batch_size=2, steps=10, scores=[0.5, 0.7, 0.6, 0.65, 0.9], eval_every=1, early_stopping_patience=2
    )
    assert state.stopped_early and state.step == 4
    assert state.best_value == 0.7 and state.best_step == 2
    assert saved == [1, 2]
    assert [r["step"] for r in log.records if "eval/accuracy" in r] == [1, 2, 3, 4]


def test_clipping_bounds_the_update():
    rows = _rows(scale=1000.0)  # huge gradients
    torch.manual_seed(0)
    start = torch.nn.Linear(4, 1)

    def update_norm(model):
        return torch.cat([(model.weight - start.weight).flatten(), model.bias - start.bias]).norm()

    assert update_norm(_fit(rows, batch_size=8)[0]) > 1.0
    assert update_norm(_fit(rows, batch_size=8, max_grad_norm=1.0)[0]) <= 0.1 * 1.0 + 1e-5  # lr * max_grad_norm


class NanOnSecondBatch(TokenLoss):
    def __init__(self):
        self.calls = 0

    def loss_sum(self, model, batch):
        self.calls += 1
        loss = super().loss_sum(model, batch)
        return loss * float("nan") if self.calls == 2 else loss


def test_non_finite_loss_stops_naming_the_step():
    with pytest.raises(NonFiniteLoss, match="at step 2"):
        _fit(_rows(), batch_size=2, steps=4, loss=NanOnSecondBatch())


def test_non_finite_loss_skip_drops_only_that_update():
    model, log, state, _ = _fit(_rows(), batch_size=2, steps=4, loss=NanOnSecondBatch(), nonfinite=NonFinite.skip)
    assert state.skipped_steps == 1 and state.step == 3  # 4 batches, one update dropped
    assert torch.isfinite(model.weight).all()
