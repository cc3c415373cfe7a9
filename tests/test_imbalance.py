"""Imbalanced classification: class weights (given or balanced), focal loss, label smoothing, weighted sampler."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset

from conftest import FAST, only_run_dir, cli, write_jsonl
from llmft.config import DataConfig
from llmft.tasks.options import ClassificationOptions as TaskConfig
from llmft.data.loading import EpochSampler
from llmft.errors import UserError
from llmft.tasks.classification import ClassificationTask


def _task(**kw):
    class Tok:
        def __call__(self, texts, **kwargs):
            return {"input_ids": [[1, 2] for _ in texts]}

    task = ClassificationTask(TaskConfig(data=DataConfig(label_names=["neg", "pos"]), **kw), tokenizer=Tok(), max_length=8)
    rows = Dataset.from_dict({"text": ["a"] * 100, "label": ["neg"] * 90 + ["pos"] * 10})
    task.prepare({"train": rows})
    return task


def test_balanced_weights_follow_sklearn():
    task = _task(balance_classes=True)
    assert task.train_label_counts == [90, 10]
    assert task.class_weights.tolist() == pytest.approx([100 / (2 * 90), 100 / (2 * 10)])


def test_given_weights_must_match_the_labels():
    assert _task(class_weights=[1.0, 9.0]).class_weights.tolist() == [1.0, 9.0]
    with pytest.raises(UserError, match="3 values for 2 labels"):
        _task(class_weights=[1.0, 2.0, 3.0])


class Logits(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, **inputs):
        return type("Out", (), {"logits": self.logits})()


def test_loss_variants_match_their_definitions():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    batch = {"input_ids": torch.zeros(3, 2, dtype=torch.long), "labels": labels}
    plain = _task().loss_sum(Logits(logits), batch)
    assert plain == pytest.approx(F.cross_entropy(logits, labels, reduction="sum").item())
    weighted = _task(class_weights=[1.0, 3.0]).loss_sum(Logits(logits), batch)
    assert weighted == pytest.approx(F.cross_entropy(logits, labels, weight=torch.tensor([1.0, 3.0]), reduction="sum").item())
    smooth = _task(label_smoothing=0.1).loss_sum(Logits(logits), batch)
    assert smooth == pytest.approx(F.cross_entropy(logits, labels, label_smoothing=0.1, reduction="sum").item())
    focal = _task(focal_gamma=2.0).loss_sum(Logits(logits), batch)
    p = torch.softmax(logits, -1)[torch.arange(3), labels]
    assert focal == pytest.approx((-((1 - p) ** 2) * p.log()).sum().item(), rel=1e-5)
    assert focal < plain


def test_weighted_sampler_balances_classes():
    task = _task(weighted_sampler=True)
    weights = task.sample_weights({"labels": [0] * 90 + [1] * 10})
    drawn = list(EpochSampler(100, seed=0, shuffle=True, weights=weights))
    minority = sum(1 for i in drawn if i >= 90)
    assert 35 <= minority <= 65  # about half, where uniform sampling gives 10


def test_imbalanced_run_from_the_cli(tmp_path):
    rows = [{"text": f"row {i}", "label": "rare" if i % 10 == 0 else "common"} for i in range(200)]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    cli(
        [
            "train",
            *FAST,
            "task=classification",
            f"task.data.path={data}",
            "task.balance_classes=true",
            "task.weighted_sampler=true",
            "task.focal_gamma=1.0",
            "task.label_smoothing=0.05",
        ],
        cwd=tmp_path,
    )
    plan = json.loads((only_run_dir(tmp_path / "outputs") / "run.json").read_text())["plan"]
    assert plan["labels"] == ["common", "rare"]
    assert plan["class_weights"][1] > 4 * plan["class_weights"][0]
