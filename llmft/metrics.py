"""Metrics computed with well-kept offline libraries (scikit-learn here); hub metrics only by name."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def classification_metrics(
    labels: Sequence[int], probs: np.ndarray, label_names: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro and per-class precision/recall/F1, ROC-AUC and the confusion matrix.

    `probs` is (n, num_classes); predictions are its argmax. ROC-AUC is binary on the positive class
    for two classes and macro one-vs-rest for more; it is omitted when a class is absent from `labels`.
    """
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y_true = np.asarray(labels)
    y_pred = probs.argmax(axis=1)
    classes = list(range(len(label_names)))
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, average="macro", zero_division=0
    )
    per_p, per_r, per_f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, average=None, zero_division=0
    )
    out: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
    }
    present = set(y_true.tolist())
    if len(present) == len(classes) and len(classes) >= 2:
        if len(classes) == 2:
            out["roc_auc"] = float(roc_auc_score(y_true, probs[:, 1]))
        else:
            out["roc_auc"] = float(roc_auc_score(y_true, probs, multi_class="ovr", average="macro", labels=classes))
    for i, name in enumerate(label_names):
        out[f"precision/{name}"] = float(per_p[i])
        out[f"recall/{name}"] = float(per_r[i])
        out[f"f1/{name}"] = float(per_f1[i])
        out[f"support/{name}"] = int(support[i])
    out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=classes).tolist()
    return out


def hub_metric(name: str, predictions: Sequence[Any], references: Sequence[Any], **kwargs: Any) -> dict[str, Any]:
    """A metric from the `evaluate` hub by name (needs the network and `pip install llmft[hub-metrics]`)."""
    import evaluate

    return dict(evaluate.load(name).compute(predictions=predictions, references=references, **kwargs))
