"""Entity-level metrics of tag sequences by seqeval (the CoNLL `conlleval` definitions): micro precision, recall and
F1 over whole entities, the same per entity type, and token accuracy.

seqeval's default mode reads chunks as conlleval does, so IOB1 (an entity opens with I-, B- only between two
adjacent entities of one type) and IOB2 (every entity opens with B-) score alike: `I-PER I-PER` is one PER entity in
either, and a prediction that opens an entity with I- counts as that entity (both sides are read in IOB2, `to_iob2`).
Token accuracy compares the tags per word as given and as predicted, as transformers' run_ner.py reports it: a
predicted I-X that continues a gold X is right, whatever type the word before it was predicted."""

from __future__ import annotations

from typing import Any


def entity_metrics(y_true: list[list[str]], y_pred: list[list[str]]) -> dict[str, Any]:
    """{precision, recall, f1, accuracy, precision_<TYPE>, recall_<TYPE>, f1_<TYPE>, support_<TYPE>} for sentences of
    tag names (one tag per word, gold and predicted of equal lengths)."""
    from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score

    accuracy = float(accuracy_score(y_true, y_pred))  # per word, O tags included, tags as predicted
    y_true, y_pred = [to_iob2(tags) for tags in y_true], [to_iob2(tags) for tags in y_pred]

    metrics: dict[str, Any] = {
        "precision": float(precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, zero_division=0)),
        "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        "accuracy": accuracy,
    }
    report = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    for kind, row in sorted(report.items()):
        if kind.endswith(" avg"):
            continue  # micro/macro/weighted averages: the micro ones are above
        metrics.update(
            {
                f"precision_{kind}": float(row["precision"]),
                f"recall_{kind}": float(row["recall"]),
                f"f1_{kind}": float(row["f1-score"]),
                f"support_{kind}": int(row["support"]),
            }
        )
    return metrics


def to_iob2(tags: list[str]) -> list[str]:
    """IOB1 (or a prediction that opens an entity with I-) as IOB2: an I-X that does not continue an X opens it, B-X.
    IOB2 tags stay as they are."""
    out = []
    for i, tag in enumerate(tags):
        opens = tag.startswith("I-") and (i == 0 or tags[i - 1] == "O" or tags[i - 1][2:] != tag[2:])
        out.append("B-" + tag[2:] if opens else tag)
    return out
