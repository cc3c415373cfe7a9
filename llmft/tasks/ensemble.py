"""Ensembles of runs (`llmft eval run=[a,b,c]`, `llmft generate run=[a,b,c]`): the members' class probabilities (or
regression scores) averaged row by row. The families call these; the verbs ask the family (`Ensembled`)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from llmft.errors import UserError
from llmft.tasks.base import Task


@runtime_checkable
class Ensembled(Protocol):
    """A family whose members' outputs can be averaged: its eval partials and its `llmft generate` rows (each member's
    `member_predictions`: `predict`'s rows, or what the family averages when those are not averageable)."""

    def member_predictions(self, model: Any, request: Any) -> list[dict[str, Any]]: ...

    def ensemble_partials(self, members: list[list[dict[str, Any]]]) -> list[dict[str, Any]]: ...

    def ensemble_predictions(self, members: list[list[dict[str, Any]]]) -> list[dict[str, Any]]: ...


def _same_rows(members: list[list[dict[str, Any]]], key: str) -> None:
    first = np.concatenate([x for p in members[0] for x in p[key]])
    for other in members[1:]:
        if not np.array_equal(first, np.concatenate([x for p in other for x in p[key]])):
            raise UserError(
                "ensemble members scored different rows (their tokenizers cut or dropped different rows); "
                "ensemble runs trained on the same data and tokenizer"
            )


def labels_and_probabilities(partials: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) of every shard's rows, in order: what temperature scaling and ensembles read."""
    return (np.concatenate([x for p in partials for x in p["labels"]]), np.concatenate([x for p in partials for x in p["probs"]]))


def average_probability_partials(members: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One partial per shard whose probabilities are the members' mean, and whose loss is the NLL of that mean."""
    _same_rows(members, "labels")
    out = []
    for shard in zip(*members):
        probs = [np.mean([m["probs"][b] for m in shard], axis=0) for b in range(len(shard[0]["probs"]))]
        labels = shard[0]["labels"]
        loss = float(sum(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).sum() for p, y in zip(probs, labels)))
        out.append({"loss": loss, "n": shard[0]["n"], "probs": probs, "labels": labels})
    return out


def average_prediction_partials(members: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One partial per shard whose predicted scores are the members' mean (regression)."""
    _same_rows(members, "labels")
    return [
        {
            "labels": shard[0]["labels"],
            "predictions": [np.mean([m["predictions"][b] for m in shard], axis=0) for b in range(len(shard[0]["predictions"]))],
        }
        for shard in zip(*members)
    ]


def mean_of(members: list[list[dict[str, Any]]], key: str) -> list[Any]:
    """Row by row, the members' mean of `key` (a number, a list or a {name: number} dict)."""
    out = []
    for rows in zip(*members):
        values = [r[key] for r in rows]
        if isinstance(values[0], dict):
            out.append({k: float(np.mean([v[k] for v in values])) for k in values[0]})
        else:
            out.append(np.mean(values, axis=0).tolist())
    return out


def check_members(runs: list[Any], families: list[str], models: list[Any]) -> None:
    """Every member of one family and one label set (the checkpoints' id2label, in id order)."""
    if len(runs) < 2:
        raise UserError(f"an ensemble takes two runs or more, run=[a,b,...]; got {len(runs)}")
    if len(set(families)) > 1:
        raise UserError(f"ensemble members must share a task family; got {', '.join(sorted(set(families)))}")
    labels = [[str(v) for _, v in sorted((int(k), v) for k, v in m.config.id2label.items())] for m in models]
    for run, own in zip(runs[1:], labels[1:]):
        if own != labels[0]:
            raise UserError(f"ensemble members must share labels: {runs[0]} has {labels[0]}, {run} has {own}")


def check_ensembled(task: Task) -> None:
    if not isinstance(task, Ensembled):
        raise UserError(
            f"task.family={task.cfg.family} cannot be ensembled (classification, multiple_choice, "
            "regression and token_classification can)"
        )
