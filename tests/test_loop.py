"""The training loop on its own: accumulation equals the full batch, clipping, early stopping, best selection."""

from __future__ import annotations

import torch

from llmft.config import MetricMode, OptimizerConfig, OptimizerName, PrecisionMode, SchedulerConfig, SchedulerName, TrainerConfig
from llmft.loop import Selection, fit
from llmft.optim import build_optimizer, build_scheduler
from llmft.precision import resolve_precision
from llmft.report import MetricsLog


class TokenLoss:
    """A token-level loss: each row has a different number of supervised positions (mask)."""

    def count(self, batch):
        return int(batch["mask"].sum())

    def loss_sum(self, model, batch):
        per_token = (model(batch["x"]).squeeze(-1) - batch["y"]) ** 2
        return (per_token * batch["mask"]).sum()


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 6, 4, generator=g)
    y = torch.randn(8, 6, generator=g)
    mask = (torch.rand(8, 6, generator=g) > 0.4).float()
    mask[:3, 3:] = 0  # the first micro-batch has far fewer supervised tokens
    return {"x": x, "y": y, "mask": mask}


def _train(batches, accum, max_grad_norm=None):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    cfg = TrainerConfig(epochs=1, grad_accum_steps=accum, max_grad_norm=max_grad_norm, progress=False, log_every=1)
    opt = build_optimizer(OptimizerConfig(name=OptimizerName.sgd, lr=0.1, momentum=0.0, weight_decay=0.0), model)
    sched = build_scheduler(SchedulerConfig(name=SchedulerName.constant), opt, 1)
    precision = resolve_precision(PrecisionMode.fp32, torch.device("cpu"))
    log = MetricsLog(None)
    fit(model, TokenLoss(), batches, opt, sched, precision, cfg, lambda: {"accuracy": 0.0}, Selection("accuracy", MetricMode.max), lambda s, m: None, log, 1)
    return model, log


def _split(data, sizes):
    out, start = [], 0
    for n in sizes:
        out.append({k: v[start : start + n] for k, v in data.items()})
        start += n
    return out


def test_accumulated_micro_batches_equal_one_full_batch():
    data = _data()
    full, full_log = _train([data], accum=1)
    accumulated, acc_log = _train(_split(data, [3, 5]), accum=2)
    assert torch.allclose(full.weight, accumulated.weight, atol=1e-6)
    assert torch.allclose(full.bias, accumulated.bias, atol=1e-6)
    assert abs(full_log.records[0]["train/loss"] - acc_log.records[0]["train/loss"]) < 1e-6


def test_mean_of_micro_batch_means_would_differ():
    """Guard that the data really has unequal token counts (else the test above proves nothing)."""
    data = _data()
    a, b = _split(data, [3, 5])
    assert a["mask"].sum() / 3 != b["mask"].sum() / 5


def test_early_stopping_and_best_step():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    batches = [_data() for _ in range(10)]
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.9])
    saved = []
    cfg = TrainerConfig(epochs=1, eval_every=1, early_stopping_patience=2, progress=False)
    opt = build_optimizer(OptimizerConfig(), model)
    sched = build_scheduler(SchedulerConfig(), opt, 10)
    precision = resolve_precision(PrecisionMode.fp32, torch.device("cpu"))
    result = fit(model, TokenLoss(), batches, opt, sched, precision, cfg, lambda: {"accuracy": next(scores)},
                 Selection("accuracy", MetricMode.max), lambda step, m: saved.append(step), MetricsLog(None), 10)
    assert result.stopped_early and result.steps == 4
    assert result.best_value == 0.7 and result.best_step == 2
    assert saved == [1, 2]


def test_clipping_bounds_the_update():
    data = _data()
    data["y"] = data["y"] * 1000  # huge gradients
    torch.manual_seed(0)
    start = torch.nn.Linear(4, 1)

    def update_norm(model):
        return torch.cat([(model.weight - start.weight).flatten(), model.bias - start.bias]).norm()

    assert update_norm(_train([data], accum=1)[0]) > 1.0
    assert update_norm(_train([data], accum=1, max_grad_norm=1.0)[0]) <= 0.1 * 1.0 + 1e-5  # lr * max_grad_norm
