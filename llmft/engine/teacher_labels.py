"""finetune.augment: the teacher labels the transfer rows (data/word_swaps.py) before training, so they train like any
labelled row: the task term learns the teacher's answer (its top class, its tag per supervised word, its score), the
teacher term its whole distribution, computed live on the batch or cached, as for the other rows.

The rule follows the labels' shape, so it holds for every family with class or score outputs: float labels (a score)
take the teacher's output; integer labels with one value per row or per token take the teacher's arg-max there, and a
position the task does not supervise (IGNORE) stays unsupervised. The answers are read from the teacher's logits per
row (teacher_cache.row_logits), which finetune.cache_teacher=true then keeps, so the copies pass through the teacher once.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from llmft.engine.token_loss import IGNORE


def _answer(logits: torch.Tensor, label: Any) -> Any:
    """The teacher's label for one row, in the type of the row's own `label`, from its logits: a score, a class, or a
    tag per token (logits over the row's tokens; unsupervised positions stay IGNORE)."""
    if isinstance(label, float):
        return logits.reshape(()).item()
    if isinstance(label, list):
        top = logits.argmax(-1).tolist()
        return [gold if gold == IGNORE else tag for gold, tag in zip(label, top, strict=True)]
    return int(logits.argmax(-1))


def with_answers(features: Any, logits: Sequence[torch.Tensor]) -> Any:
    """`features` (tokenized rows with a `labels` column) with each row's labels replaced by the teacher's answers,
    read from its logits for that row (`logits[i]` for row i: teacher_cache.row_logits)."""
    answers = [_answer(row, label) for row, label in zip(logits, features["labels"], strict=True)]
    return features.remove_columns("labels").add_column("labels", answers).cast(features.features)
