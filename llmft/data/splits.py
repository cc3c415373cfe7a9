"""The validation/test rows a run carved off its train data, saved in the run folder (splits.json), so that every verb
that later scores a carved split (`llmft eval`) scores the very rows the run held out, and never a row it trained on.

Why the row positions and not only the seed and ratio: re-carving from the seed reproduces the split only while the
file and `datasets`' shuffle stay as they were; an edited file (a row added at the top) would then silently move
trained rows into "test". The positions are exact, and a digest of the train data says whether they still point at
the same rows: when it differs, eval refuses instead of guessing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

from llmft.config import DataConfig
from llmft.data.loading import ROW_COLUMN, local_files
from llmft.errors import UserError
from llmft.runs.run_folder import RunFolder

# A split under this many rows measures nothing: one row moves accuracy by >= 5 points, and at 20 rows the 95%
# interval of an accuracy near 0.8 is still about +-0.18 (binomial), wider than most differences between runs.
SMALL_SPLIT = 20
SOURCE_FIELDS = ("path", "name", "revision", "data_files", "train_split")  # what picks the rows a carve starts from


def source(cfg: DataConfig) -> dict[str, Any]:
    """The fields that pick the rows a carve starts from (no data_files: {} and None, as older runs saved it)."""
    return {field: (getattr(cfg, field) or None) if field == "data_files" else getattr(cfg, field) for field in SOURCE_FIELDS}


def carved_roles(splits: dict[str, Any]) -> list[str]:
    """The roles of `splits` (from data.named_splits) that were carved off train: they keep each row's file position."""
    return [role for role in ("eval", "test") if ROW_COLUMN in splits[role].column_names]


def record(raw: Any, splits: dict[str, Any], cfg: DataConfig) -> dict[str, Any]:
    """What splits.json holds: the data source, a digest of its train split and, per carved role, its split name and
    the positions of its rows in the train split (in the order they were scored)."""
    names = {"eval": cfg.eval_split, "test": cfg.test_split}
    return {
        "source": source(cfg),
        "train_rows": len(raw[cfg.train_split]),
        "train_digest": train_digest(raw, cfg),
        "carved": {
            role: {"split": names[role], "rows": [int(r) for r in splits[role][ROW_COLUMN]]} for role in carved_roles(splits)
        },
    }


def write(run_dir: Path, carve: dict[str, Any]) -> None:
    if carve["carved"]:
        RunFolder(run_dir).splits.write_text(json.dumps(carve) + "\n")


def train_digest(raw: Any, cfg: DataConfig) -> str:
    """sha256 of the train file's bytes (local data), else the fingerprint `datasets` gave the train split (a hub
    data set: fixed by its id, configuration and revision)."""
    file = (local_files(cfg) or {}).get(cfg.train_split)
    if file is None:
        return str(getattr(raw[cfg.train_split], "_fingerprint", ""))
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def saved_split(run_dir: Path, raw: Any, cfg: DataConfig, role: str) -> Optional[Any]:
    """The rows the run carved for `role`, from the run's own data as loaded now (`raw`); None when the run did not
    carve `role`, has no splits.json (a run from before it was written), or `cfg` names other data than the run's."""
    path = RunFolder(run_dir).splits
    if not path.is_file():
        return None
    carve = json.loads(path.read_text())
    if role not in carve["carved"] or carve["source"] != source(cfg):
        return None
    train = raw[cfg.train_split]
    if len(train) != carve["train_rows"] or train_digest(raw, cfg) != carve["train_digest"]:
        where = (local_files(cfg) or {}).get(cfg.train_split, cfg.path)
        raise UserError(
            f"{where} changed since run {run_dir} was trained, so the rows it held out for "
            f"'{carve['carved'][role]['split']}' cannot be found; restore the file, or score other data "
            "with task.data.path=<file> (all its rows)"
        )
    rows = carve["carved"][role]["rows"]
    return train.add_column(ROW_COLUMN, list(range(len(train)))).select(rows)  # keep file positions for error messages


def describe(splits: dict[str, Any], cfg: DataConfig) -> tuple[str, list[str]]:
    """One line with the rows of each split (and which were carved), and a warning per carved split too small to
    measure anything."""
    names = {"train": cfg.train_split, "eval": cfg.eval_split, "test": cfg.test_split}
    carved = carved_roles(splits)
    parts = [
        f"{names[role]} {len(ds)} row{'s' * (len(ds) != 1)}" + (" (carved from train)" if role in carved else "")
        for role, ds in splits.items()
    ]
    warnings = [
        f"warning: the {names[role]} split carved from train has only {len(splits[role])} row(s) (< {SMALL_SPLIT}): "
        f"its metrics measure nothing; give more data, a larger task.data.carve_ratio, or a {names[role]} file"
        for role in carved
        if len(splits[role]) < SMALL_SPLIT
    ]
    return "data: " + ", ".join(parts), warnings
