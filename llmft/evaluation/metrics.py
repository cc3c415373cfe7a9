"""Metrics computed with well-kept offline libraries (scikit-learn here); hub metrics only by name."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from llmft.errors import UserError
from llmft.evaluation.calibration import expected_calibration_error


def classification_metrics(labels: Sequence[int], probs: np.ndarray, label_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro and per-class precision/recall/F1, ROC-AUC and the confusion matrix.

    `probs` is (n, num_classes); predictions are its argmax. Macro averages are scikit-learn's default: over
    the classes present in the labels or the predictions (a class absent from both is not counted as 0);
    per-class figures are given for every class. `ece` is the expected calibration error over 15 equal-width
    confidence bins (evaluation/calibration.py). ROC-AUC is binary on the positive class for two classes
    and macro one-vs-rest for more; it is omitted when a class is absent from `labels`.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score

    y_true = np.asarray(labels)
    y_pred = probs.argmax(axis=1)
    classes = list(range(len(label_names)))
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    per_p, per_r, per_f1, support = precision_recall_fscore_support(y_true, y_pred, labels=classes, average=None, zero_division=0)
    out: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
    }
    present = set(y_true.tolist())
    if not np.isfinite(probs).all():  # a diverged model (the loop stops it at its next step): no ranking to score
        out["roc_auc"] = float("nan")
    elif len(present) == len(classes) and len(classes) >= 2:
        if len(classes) == 2:
            out["roc_auc"] = float(roc_auc_score(y_true, probs[:, 1]))
        else:
            out["roc_auc"] = float(roc_auc_score(y_true, probs, multi_class="ovr", average="macro", labels=classes))
    for i, name in enumerate(label_names):
        out[f"precision/{name}"] = float(per_p[i])
        out[f"recall/{name}"] = float(per_r[i])
        out[f"f1/{name}"] = float(per_f1[i])
        out[f"support/{name}"] = int(support[i])
    out["ece"] = expected_calibration_error(y_true, probs)
    out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=classes).tolist()
    return out


def load_hub_metrics(names: Sequence[str]) -> list[Any]:
    """Metrics from the `evaluate` hub by name, loaded up front so a bad name fails before training."""
    if not names:
        return []

    try:
        import evaluate
    except ImportError as ex:
        raise UserError(f"task.hub_metrics={list(names)} needs the evaluate package: pip install 'llmft[hub-metrics]'") from ex
    loaded = []
    for name in names:
        try:
            loaded.append(evaluate.load(name))
        except Exception as ex:  # evaluate raises many types for a missing/offline metric script
            raise UserError(f"could not load hub metric '{name}' (it needs the network): {str(ex).splitlines()[0]}") from ex
    return loaded


def hub_metric_values(metrics: Sequence[Any], predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for metric in metrics:
        for key, value in metric.compute(predictions=predictions, references=references).items():
            out[f"hub/{metric.name}/{key}" if key in out else key] = value
    return out


def correlations(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Pearson and Spearman (scipy.stats) and MSE; a correlation with a constant side (undefined) counts as 0."""
    from scipy import stats

    constant = len(y_true) < 2 or np.ptp(y_true) == 0 or np.ptp(y_pred) == 0
    pearson = 0.0 if constant else float(stats.pearsonr(y_true, y_pred)[0])
    spearman = 0.0 if constant else float(stats.spearmanr(y_true, y_pred)[0])
    return {"pearson": pearson, "spearman": spearman, "mse": float(np.mean((y_true - y_pred) ** 2))}
