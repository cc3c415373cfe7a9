"""finetune.augment: the teacher labels the transfer rows (data/word_swaps.py) before training, so they train like any
labelled row: the task term learns the teacher's answer (its top class, its tag per supervised word, its score), the
teacher term its whole distribution, computed live on the batch or cached, as for the other rows.

The rule follows the labels' shape, so it holds for every family with class or score outputs: float labels (a score)
take the teacher's output; integer labels with one value per row or per token take the teacher's arg-max there, and a
position the task does not supervise (IGNORE) stays unsupervised.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from llmft.engine.distributed import Dist
from llmft.engine.precision import Precision
from llmft.engine.teacher_cache import teacher_passes
from llmft.engine.token_loss import IGNORE


def _answers(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The teacher's labels in the shape and type of the batch's `labels`."""
    if labels.is_floating_point():
        return logits.reshape(labels.shape).to(labels.dtype)
    top = logits.argmax(-1)
    return torch.where(labels == IGNORE, labels, top) if labels.dim() > 1 else top


def _unpadded(rows: torch.Tensor, mask: Optional[torch.Tensor]) -> list[Any]:
    """Per-token label rows cut back to each row's own tokens (the attended positions; padding is on the right)."""
    if rows.dim() == 1:
        return rows.tolist()
    return [row[: int(m.sum())].tolist() for row, m in zip(rows, mask)]


def teacher_labelled(
    teacher: torch.nn.Module, features: Any, collate: Callable, batch_size: int, precision: Precision, dist: Optional[Dist] = None
) -> Any:
    """`features` (tokenized rows with a `labels` column) with each row's labels replaced by the teacher's answers;
    under torchrun each process labels a share of the rows and every process gets them all."""

    def label(part: Any) -> list[Any]:
        answers: list[Any] = []
        for batch, logits in teacher_passes(teacher, part, collate, batch_size, precision):
            answers += _unpadded(_answers(logits.cpu(), batch["labels"]), batch.get("attention_mask"))
        return answers

    answers = (dist or Dist()).shared(label, features)
    return features.remove_columns("labels").add_column("labels", answers).cast(features.features)
