"""k-fold cross-validation (`task.data.folds=k task.data.fold=i`, or `trainer.cv_folds=k`): the train split is dealt into
k disjoint folds that cover every row; fold i becomes the validation split and the other k-1 train. With strata (the
classification family gives each row's label) each class is dealt round-robin over the folds, so every fold keeps the
label proportions within one row per class (scikit-learn's StratifiedKFold does the same). The deal is fixed by
task.data.split_seed; the fold's rows keep their train-file positions, saved in splits.json like a carved split. The
validation split is the held-out fold: a validation file is not used, and none is carved off train."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np

from llmft.config import DataConfig
from llmft.data.loading import ROW_COLUMN
from llmft.errors import UserError


def assign(n: int, k: int, seed: int, strata: Optional[Sequence[Any]] = None) -> np.ndarray:
    """Each of `n` rows' fold in 0..k-1: a seeded shuffle, then rows dealt in turn (within each stratum when given;
    each stratum starts where the last one stopped, so the fold sizes differ by at most one)."""
    rng = np.random.default_rng(seed)
    fold = np.empty(n, dtype=np.int64)
    groups = (
        [np.arange(n)]
        if strata is None
        else [np.flatnonzero(np.asarray(strata, dtype=object) == s) for s in sorted(set(strata), key=str)]
    )
    start = 0
    for rows in groups:
        rows = rng.permutation(rows)
        fold[rows] = (start + np.arange(len(rows))) % k
        start = (start + len(rows)) % k
    return fold


def apply(splits: dict[str, Any], cfg: DataConfig, strata_of: Callable[[Any], Optional[list]]) -> dict[str, Any]:
    """`splits` with fold `cfg.fold` of train as the eval split and the rest as train; unchanged without folds."""
    if not cfg.folds:
        return splits
    train = splits["train"]
    if ROW_COLUMN in splits["eval"].column_names:  # a validation split carved off train: its rows join the folds
        from datasets import concatenate_datasets

        train = concatenate_datasets([train, splits["eval"]]).sort(ROW_COLUMN)
    if len(train) < cfg.folds:
        raise UserError(f"task.data.folds={cfg.folds} needs at least {cfg.folds} train rows; train has {len(train)}")
    if ROW_COLUMN not in train.column_names:
        train = train.add_column(ROW_COLUMN, list(range(len(train))))
    fold = assign(len(train), cfg.folds, cfg.split_seed, strata_of(train))
    held = np.flatnonzero(fold == cfg.fold).tolist()
    kept = np.flatnonzero(fold != cfg.fold).tolist()
    return {**splits, "train": train.select(kept), "eval": train.select(held)}
