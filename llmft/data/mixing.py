"""Several data sets in one run (`task.data.sources`): each source is loaded and split as a data set of its own (its
files, format and columns; a missing eval/test split carved from its own train), then the train splits are mixed —
by probability (interleaved, seeded by task.data.split_seed, until the first source runs out), by fixed row counts
(a seeded sample of each, repeated when a source has fewer rows), or all rows of each — and the eval/test splits are
joined, and also kept per source (roles `eval/<name>`, `test/<name>`) so each is scored on its own."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Optional

import numpy as np

from llmft.config import DataConfig
from llmft.data import folds
from llmft.data import loading
from llmft.data import splits as carving
from llmft.source_specs import MIX_KEYS, source_name
from llmft.errors import UserError

SOURCE_COLUMN = "__source__"  # a train row's source (its index in task.data.sources), until the task has counted them
POSITION_COLUMNS = (loading.ROW_COLUMN, loading.LINE_COLUMN)  # positions in one source's files: meaningless in a mix


def load_splits(
    cfg: DataConfig, strata_of: Callable[[Any], Optional[list]]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(train/eval/test splits, per-source eval/test splits, the carve record for splits.json) of a run's data: one data
    set as `task.data.path` names it, or the mix of `task.data.sources`."""
    if not cfg.sources:
        raw = loading.load_raw(cfg)
        named = folds.apply(loading.named_splits(raw, cfg), cfg, strata_of)  # k-fold: fold i is eval
        return named, {}, carving.record(raw, named, cfg)
    per_source = {
        source_name(spec): loading.named_splits(loading.load_raw(source_config(cfg, spec)), source_config(cfg, spec))
        for spec in cfg.sources
    }
    per_source = {name: {role: _without_positions(ds) for role, ds in parts.items()} for name, parts in per_source.items()}
    train = mix([parts["train"] for parts in per_source.values()], cfg.sources, cfg.split_seed)
    named = {"train": train, **{role: _joined([parts[role] for parts in per_source.values()], role) for role in ("eval", "test")}}
    extra = {f"{role}/{name}": parts[role] for name, parts in per_source.items() for role in ("eval", "test")}
    return named, extra, {"source": carving.source(cfg), "carved": {}}  # each source re-carves itself from its split_seed


def source_config(cfg: DataConfig, spec: dict[str, Any]) -> DataConfig:
    """The run's `task.data` with one source's keys in place (its `split` is its train split)."""
    own: dict[str, Any] = {"sources": None, "streaming": False, "name": None, "data_files": None}
    own.update({k: v for k, v in spec.items() if k not in MIX_KEYS})
    if "split" in spec:
        own["train_split"] = spec["split"]
    return replace(cfg, **own)


def mix(trains: list[Any], specs: list[dict[str, Any]], seed: int) -> Any:
    """The sources' train splits as one, each row tagged with its source (SOURCE_COLUMN)."""
    import datasets

    trains = _aligned([ds.add_column(SOURCE_COLUMN, [i] * len(ds)) for i, ds in enumerate(trains)], "train")
    if "weight" in specs[0]:
        total = sum(float(s["weight"]) for s in specs)
        return datasets.interleave_datasets(
            trains, probabilities=[float(s["weight"]) / total for s in specs], seed=seed, stopping_strategy="first_exhausted"
        )
    if "rows" in specs[0]:
        trains = [_take(ds, int(s["rows"]), seed + i) for i, (ds, s) in enumerate(zip(trains, specs))]
    return datasets.concatenate_datasets(trains)


def _take(ds: Any, rows: int, seed: int) -> Any:
    """`rows` rows of `ds`: a seeded sample without repeats, or every row as often as fits and a sample of the rest."""
    order = np.random.default_rng(seed).permutation(len(ds))
    whole, rest = divmod(rows, len(ds))
    return ds.select(np.concatenate([np.tile(np.arange(len(ds)), whole), order[:rest]]).tolist())


def _joined(parts: list[Any], role: str) -> Any:
    import datasets

    return datasets.concatenate_datasets(_aligned(parts, role))


def _without_positions(ds: Any) -> Any:
    return ds.remove_columns([c for c in POSITION_COLUMNS if c in ds.column_names])


def _aligned(parts: list[Any], role: str) -> list[Any]:
    """The sources' splits with the same columns, in one order: a column some lack (an optional `system`) is added to
    them empty, typed as where it is present. Columns of different types are refused in one line."""
    features: dict[str, Any] = {}
    for ds in parts:
        for column, feature in ds.features.items():
            features.setdefault(column, feature)
    out = []
    for i, ds in enumerate(parts):
        for column, feature in features.items():
            if column not in ds.column_names:
                ds = ds.add_column(column, [None] * len(ds), feature=feature)
            elif ds.features[column] != feature:
                raise UserError(
                    f"task.data.sources: column '{column}' of source {i} holds {ds.features[column]}, another "
                    f"source's holds {feature}; make the {role} files agree"
                )
        out.append(ds.select_columns(list(features)))
    return out


def source_counts(train: Any, tokens: Optional[list[int]] = None) -> dict[int, dict[str, int]]:
    """Rows (and tokens, from `tokens` per row) each source gave the mixed train split."""
    ids = np.asarray(train[SOURCE_COLUMN], dtype=np.int64)
    counts = {int(i): {"rows": int((ids == i).sum())} for i in np.unique(ids)}
    if tokens is not None:
        lengths = np.asarray(tokens, dtype=np.int64)
        for i in counts:
            counts[i]["tokens"] = int(lengths[ids == i].sum())
    return counts


def describe(cfg: DataConfig, counts: dict[int, dict[str, int]]) -> list[dict[str, Any]]:
    """Per source: its name, path, how it was asked for, and the rows (and tokens) it gave the train split."""
    out = []
    for i, spec in enumerate(cfg.sources or []):
        asked = {("rows_asked" if k == "rows" else k): spec[k] for k in ("weight", "rows") if k in spec}
        out.append({"name": source_name(spec), "path": spec["path"], **asked, **counts.get(i, {"rows": 0})})
    return out


def count_and_drop(features: Any) -> tuple[Any, Optional[dict[int, dict[str, int]]]]:
    """A tokenized train split without its source tags, and the rows and tokens each source gave it (None: no mix)."""
    if SOURCE_COLUMN not in features.column_names:
        return features, None
    counts = source_counts(features, loading.row_lengths(features))
    return features.remove_columns(SOURCE_COLUMN), counts
