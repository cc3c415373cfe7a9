"""Classification metrics equal scikit-learn's on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from llmft.evaluation.metrics import classification_metrics


@pytest.mark.parametrize("num_classes", [2, 4])
def test_metrics_equal_sklearn(num_classes):
    rng = np.random.default_rng(num_classes)
    labels = rng.integers(0, num_classes, size=200)
    logits = rng.normal(size=(200, num_classes)) + 1.5 * np.eye(num_classes)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    preds = probs.argmax(axis=1)
    names = [f"c{i}" for i in range(num_classes)]

    got = classification_metrics(labels, probs, names)

    assert got["accuracy"] == pytest.approx(skm.accuracy_score(labels, preds))
    assert got["f1_macro"] == pytest.approx(skm.f1_score(labels, preds, average="macro"))
    assert got["precision_macro"] == pytest.approx(skm.precision_score(labels, preds, average="macro"))
    assert got["recall_macro"] == pytest.approx(skm.recall_score(labels, preds, average="macro"))
    per_class_f1 = skm.f1_score(labels, preds, average=None)
    for i, name in enumerate(names):
        assert got[f"f1/{name}"] == pytest.approx(per_class_f1[i])
    if num_classes == 2:
        assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, probs[:, 1]))
    else:
        assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    assert got["confusion_matrix"] == skm.confusion_matrix(labels, preds).tolist()
    assert 0.5 < got["accuracy"] < 1.0  # a real, imperfect classifier


def test_roc_auc_is_left_out_when_a_class_is_absent():
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1]])
    got = classification_metrics([0, 1], probs, ["a", "b", "c"])
    assert "roc_auc" not in got
    assert got["accuracy"] == 1.0
