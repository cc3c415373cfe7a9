"""Losses as small registered components (issue 26): every choice of a loss option has its function, the registered
functions are what the families train with, and `task.loss` is checked at compose time."""

from __future__ import annotations

import pytest
import torch

from conftest import cli
from llmft.config import ConfigError
from llmft.tasks import losses
from llmft.tasks.options import ClassificationLoss, ClassificationOptions


def test_every_choice_of_a_loss_option_has_its_function():
    assert set(losses.CLASS_LOSSES) == {c.value for c in ClassificationLoss}
    assert set(losses.EMBEDDING_LOSSES) == {"mnrl", "cosent"}


def test_focal_equals_its_definition_and_reduces_to_cross_entropy_at_gamma_zero():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    weight = torch.tensor([1.0, 2.0, 0.5])
    args = losses.ClassLossArgs(weight, 0.1, 2.0)
    ce = torch.nn.functional.cross_entropy(logits, labels, weight=weight, label_smoothing=0.1, reduction="none")
    p = torch.softmax(logits, -1)[torch.arange(6), labels]
    assert torch.allclose(losses.focal(logits, labels, args), (1 - p) ** 2 * ce)
    flat = losses.ClassLossArgs(weight, 0.1, 0.0)
    assert torch.allclose(losses.focal(logits, labels, flat), losses.cross_entropy(logits, labels, flat))


def test_a_registered_loss_is_what_the_classification_family_trains_with(monkeypatch):
    from llmft.config import DataConfig
    from llmft.tasks.classification import ClassificationTask

    seen = []

    def doubled(logits, labels, args):
        seen.append(logits.shape)
        return 2 * losses.cross_entropy(logits, labels, args)

    monkeypatch.setitem(losses.CLASS_LOSSES, "cross_entropy", doubled)
    task = ClassificationTask(ClassificationOptions(data=DataConfig(label_names=["a", "b"])))
    logits, labels = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    plain = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
    assert task._loss_of_logits(logits, labels).item() == pytest.approx(2 * plain.item()) and seen


def test_focal_gamma_alone_selects_focal_and_focal_without_gamma_is_refused(tmp_path):
    assert ClassificationOptions(focal_gamma=2.0).loss is ClassificationLoss.focal
    with pytest.raises(ConfigError, match="task.focal_gamma"):
        ClassificationOptions(loss=ClassificationLoss.focal)
    proc = cli(["train", "task.loss=focal", "trainer.dry_run=true"], tmp_path, check=False)
    assert proc.returncode == 2 and "task.focal_gamma > 0" in proc.stderr, proc.stderr
