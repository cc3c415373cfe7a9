"""finetune.cache_teacher=true: the teacher's outputs for every row of the train split, computed once before the first
step and read back by each row's index in the split (the train loader adds it, ROW_INDEX), so batches may be shuffled
or grouped by length and a row still gets its own outputs. The teacher runs in eval mode on features that do not
change between epochs, so its outputs are the ones it would give live; after the cache is filled the teacher is freed.

For the families whose teacher term compares small outputs: class logits (classification, multiple choice), a score
(regression), tag logits per token (token classification; kept at each row's real tokens only). A decoder's or
seq2seq model's per-token vocabulary distributions (rows x tokens x vocabulary floats) are not cached; the task says
which it is (`caches_teacher`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import torch

from llmft.data.loaders import make_loader
from llmft.engine.distributed import Dist
from llmft.engine.precision import Precision

RowOutputs = Union[torch.Tensor, list[torch.Tensor]]  # (rows, ...) stacked, or per row (its tokens, labels)


@dataclass(frozen=True)
class CachedBatch:
    """Stands in for the teacher on one batch: called like the model, it returns the cached logits of the batch's rows
    (per-token ones put back at the batch's real positions, zeros at its padding)."""

    outputs: RowOutputs

    def __call__(self, **inputs: torch.Tensor) -> SimpleNamespace:
        if isinstance(self.outputs, torch.Tensor):
            return SimpleNamespace(logits=self.outputs)
        mask = inputs["attention_mask"].bool()
        logits = self.outputs[0].new_zeros((*mask.shape, self.outputs[0].shape[-1]))
        logits[mask] = torch.cat(self.outputs)  # row-major, as each row's real positions are in the batch
        return SimpleNamespace(logits=logits)


@dataclass(frozen=True)
class TeacherCache:
    """The teacher's (float32) logits for each train row, by its index in the train split."""

    outputs: RowOutputs

    def __len__(self) -> int:
        return len(self.outputs)

    def for_rows(self, index: torch.Tensor) -> CachedBatch:
        if isinstance(self.outputs, torch.Tensor):
            return CachedBatch(self.outputs.index_select(0, index.to(self.outputs.device)))
        return CachedBatch([self.outputs[i] for i in index.tolist()])


def _per_token(logits: torch.Tensor, inputs: dict[str, torch.Tensor]) -> bool:
    """Logits with a value per input position (token classification), kept at the real (attended) positions only."""
    mask = inputs.get("attention_mask")
    return mask is not None and logits.dim() == 3 and tuple(logits.shape[:2]) == tuple(mask.shape)


@torch.no_grad()  # as a decorator: grad mode is set around each resume of the generator, not left on at its yields
def teacher_passes(
    teacher: torch.nn.Module, features: Any, collate: Callable, batch_size: int, precision: Precision
) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """(the batch as collated, the teacher's float32 logits) for `features` in order, a batch at a time: no gradients,
    under the run's autocast, as the live teacher runs. The cache and finetune.augment's labels read it (row_logits)."""
    accepted = set(inspect.signature(teacher.forward).parameters) - {"labels"}
    for batch in make_loader(features, batch_size, collate, False, 0, wrap=False):
        inputs = {k: v.to(precision.device) for k, v in batch.items() if k in accepted}
        with precision.autocast():
            logits = teacher(**inputs).logits.float()
        yield batch, logits


def _row_logits(teacher: torch.nn.Module, features: Any, collate: Callable, batch_size: int, precision: Precision) -> list:
    """Each row's float32 logits on the host: a row of class logits or a score, or (token classification) a
    (real tokens, labels) block."""
    rows: list[torch.Tensor] = []
    for batch, logits in teacher_passes(teacher, features, collate, batch_size, precision):
        logits = logits.cpu()
        if _per_token(logits, batch):
            rows += [row[m.bool()] for row, m in zip(logits, batch["attention_mask"])]
        else:
            rows += list(logits)
    return rows


def row_logits(
    teacher: torch.nn.Module, features: Any, collate: Callable, batch_size: int, precision: Precision, dist: Optional[Dist] = None
) -> list[torch.Tensor]:
    """The teacher's float32 logits for each row of `features`, in order, on the host; under torchrun each process runs
    the teacher over its share (`Dist.shared`) and every process gets them all."""
    return (dist or Dist()).shared(lambda part: _row_logits(teacher, part, collate, batch_size, precision), features)


def fill_cache(
    teacher: torch.nn.Module,
    features: Any,
    collate: Callable,
    batch_size: int,
    precision: Precision,
    dist: Optional[Dist] = None,
    known: Sequence[torch.Tensor] = (),
) -> TeacherCache:
    """Run the teacher once over `features` and keep each row's logits on the run's device. `known`: the outputs of
    the last len(known) rows, already computed (finetune.augment's copies, labelled from them): not run again."""
    ahead = features.select(range(len(features) - len(known))) if known else features
    rows = [*row_logits(teacher, ahead, collate, batch_size, precision, dist), *known]
    if rows and rows[0].dim() == 1:
        return TeacherCache(torch.stack(rows).to(precision.device))
    return TeacherCache([row.to(precision.device) for row in rows])
