"""One evaluation for every caller (periodic eval, test scoring): each rank of a shard scores its own batches, the
partials are gathered and the task's metrics computed once over all of them, so they equal one process's."""

from __future__ import annotations

from typing import Any, Iterable, Protocol

from llmft.engine.distributed import Dist
from llmft.engine.precision import Precision


class Scorer(Protocol):
    def eval_partial(self, model: Any, batches: Iterable[Any], precision: Precision, role: str, dist: Dist) -> dict[str, Any]: ...
    def eval_metrics(self, partials: list[dict[str, Any]], role: str) -> dict[str, Any]: ...


def gathered_metrics(
    task: Scorer, model: Any, batches: Iterable[Any], precision: Precision, role: str, shard: Dist
) -> dict[str, Any]:
    """`task`'s metrics over the batches every rank of `shard` scored (and its share of generated rows); computed on
    the shard's rank 0, {} on the other ranks."""
    partials = shard.gather(task.eval_partial(model, batches, precision, role, shard))  # a collective: every rank
    return task.eval_metrics(partials, role) if shard.main else {}
