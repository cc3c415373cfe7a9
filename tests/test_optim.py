"""Optimizers and schedules built from their configs."""

from __future__ import annotations

import math

import pytest
import torch

from llmft.config import OptimizerConfig, OptimizerName, SchedulerConfig, SchedulerName
from llmft.engine.optim import build_optimizer, build_scheduler, lr_multiplier


def _model():
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))


@pytest.mark.parametrize(
    "name, cls",
    [(OptimizerName.sgd, torch.optim.SGD), (OptimizerName.adam, torch.optim.Adam), (OptimizerName.adamw, torch.optim.AdamW)],
)
def test_no_weight_decay_on_biases_and_norms(name, cls):
    model = _model()
    opt = build_optimizer(OptimizerConfig(name=name, lr=0.1, weight_decay=0.1), model)
    assert isinstance(opt, cls)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert {p.ndim for p in decayed["params"]} == {2}
    assert {p.ndim for p in plain["params"]} == {1}
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))


def test_frozen_parameters_are_not_optimized():
    model = _model()
    model[0].weight.requires_grad_(False)
    opt = build_optimizer(OptimizerConfig(), model)
    assert all(p is not model[0].weight for g in opt.param_groups for p in g["params"])


def _lrs(cfg: SchedulerConfig, total: int) -> list[float]:
    f = lr_multiplier(cfg, total)
    return [f(s) for s in range(total)]


def test_warmup_then_linear_decay_to_zero():
    lrs = _lrs(SchedulerConfig(name=SchedulerName.linear, warmup_steps=4), 20)
    assert lrs[:4] == sorted(lrs[:4]) and lrs[0] < lrs[3] < 1.0
    assert lrs[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert lrs[-1] == pytest.approx(1 / 16)


def test_warmup_ratio_and_cosine_floor():
    lrs = _lrs(SchedulerConfig(name=SchedulerName.cosine, warmup_ratio=0.1, min_lr_ratio=0.1), 100)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert min(lrs[10:]) >= 0.1 - 1e-9


def test_constant_and_exponential():
    assert set(_lrs(SchedulerConfig(name=SchedulerName.constant), 10)) == {1.0}
    lrs = _lrs(SchedulerConfig(name=SchedulerName.exponential, gamma=0.9), 5)
    assert lrs == pytest.approx([0.9**i for i in range(5)])


def test_scheduler_drives_the_optimizer_lr():
    model = _model()
    opt = build_optimizer(OptimizerConfig(name=OptimizerName.sgd, lr=0.5), model)
    sched = build_scheduler(SchedulerConfig(name=SchedulerName.linear, warmup_steps=0), opt, total_steps=4)
    seen = []
    for _ in range(4):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.5, 0.375, 0.25, 0.125])
