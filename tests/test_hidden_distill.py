"""DistilBERT's hidden-state term (finetune.hidden_weight): the cosine distance between each student block's output and
its teacher block's equals a hand computation (masked positions left out, the layer map followed), and it enters a
real distillation run's loss."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from conftest import FAST, cli, only_run_dir

from llmft.engine.distill_loss import Distillation, DistilledLoss
from llmft.engine.hidden_distill import HiddenMatch, layer_map
from llmft.errors import UserError
from llmft.tasks import get_task, options

LOGITS = [[1.0, 0.0], [0.4, -0.3]]


class Emit(torch.nn.Module):
    """A block whose output is fixed (batch, positions, hidden), returned as transformers' blocks do: a tuple."""

    def __init__(self, output: list) -> None:
        super().__init__()
        self.out = torch.nn.Parameter(torch.tensor(output, dtype=torch.float32))

    def forward(self, hidden: torch.Tensor | None) -> tuple[torch.Tensor]:
        return (self.out,)


class Stacked(torch.nn.Module):
    """A model with a layer stack of fixed blocks and fixed class logits."""

    def __init__(self, outputs: list[list]) -> None:
        super().__init__()
        self.config = SimpleNamespace(hidden_size=len(outputs[0][0][0]))
        self.layers = torch.nn.ModuleList([Emit(o) for o in outputs])
        self.logits = torch.nn.Parameter(torch.tensor(LOGITS))

    def forward(self, **inputs: torch.Tensor) -> SimpleNamespace:
        hidden = None
        for block in self.layers:
            hidden = block(hidden)[0]
        return SimpleNamespace(logits=self.logits)


def _block(seed: float) -> list:
    """(2 examples, 2 positions, 3 hidden) of distinct values."""
    return [[[seed + i + 2 * j + 0.5 * k * (-1) ** (i + j) for k in range(3)] for j in range(2)] for i in range(2)]


def _cos_distance(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return 1.0 - dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_the_hidden_term_equals_a_hand_computation():
    student_out = [_block(0.3), _block(-1.0)]
    teacher_out = [_block(s) for s in (2.0, 0.1, -0.7, 5.0)]
    student, teacher = Stacked(student_out), Stacked(teacher_out).requires_grad_(False)
    mapping = layer_map(student, teacher, [1, 2])
    mask = [[1, 1], [1, 0]]  # the second example's last position is padding: left out
    batch = {"input_ids": torch.zeros(2, 2, dtype=torch.long), "attention_mask": torch.tensor(mask)}
    batch["labels"] = torch.tensor([0, 1])
    kd = Distillation(2.0, 0.5)
    task = get_task(options.ClassificationOptions())
    plain = float(DistilledLoss(task, teacher, kd).loss_sum(student, batch).detach())
    with_hidden = DistilledLoss(task, teacher, kd, HiddenMatch(0.7, mapping)).loss_sum(student, batch)

    distances = [
        _cos_distance(student_out[i][b][p], teacher_out[j][b][p])
        for i, j in enumerate([1, 2])
        for b in range(2)
        for p in range(2)
        if mask[b][p]
    ]
    hand = 0.7 * sum(distances) / len(distances) * 2  # * the batch's 2 examples: the loop divides the sum by them
    assert float(with_hidden.detach()) - plain == pytest.approx(hand, rel=1e-5)
    with_hidden.backward()
    assert student.layers[0].out.grad is not None and teacher.layers[1].out.grad is None


def test_the_default_map_is_num_layers_spacing_and_a_mismatch_is_refused():
    student, teacher = Stacked([_block(0.0)] * 2), Stacked([_block(1.0)] * 6)
    assert layer_map(student, teacher, None) == [0, 3]
    with pytest.raises(UserError, match="cannot be matched"):
        layer_map(student, teacher, [0, 2, 4])


def _first_loss(where, extra: list[str]) -> float:
    where.mkdir()
    args = [*FAST, "task=sentiment", "finetune=distill", "finetune.teacher=tiny-bert", "model.keep_layers=[1]"]
    cli(["train", *args, "finetune.alpha=1", "trainer.log_every=1", "trainer.max_steps=1", *extra], cwd=where)
    records = [json.loads(x) for x in (only_run_dir(where / "outputs") / "metrics.jsonl").read_text().splitlines()]
    return next(r["train/loss"] for r in records if "train/loss" in r)


def test_a_distilled_run_adds_the_weighted_hidden_term_and_refuses_a_negative_weight(tmp_path):
    plain = _first_loss(tmp_path / "plain", [])
    hidden = _first_loss(tmp_path / "hidden", ["finetune.hidden_weight=0.5"])
    assert plain < hidden <= plain + 0.5 * 2  # a cosine distance is at most 2
    proc = cli(["train", *FAST, "finetune=distill", "finetune.hidden_weight=-1"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "finetune.hidden_weight must be a finite number >= 0" in proc.stderr
