"""`task.data.sources`: the spec of each data set a run mixes, checked at compose time (one line per mistake).

A source is `{path, weight | rows, split, format, name, ...}`: `weight` mixes by probability, `rows` takes that many
rows of it (repeating it when it has fewer), neither takes all of it; every source must say it the same way. `split`
is its train split; `name` is what its eval metrics are called (`eval/<name>/loss`; default: the file's stem). Any
other `task.data` key (text_columns, label_column, format, field, eval_split, ...) applies to that source alone."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any, Optional

from llmft.config_types import ConfigError
from llmft.errors import closest

MIX_KEYS = ("weight", "rows", "split", "name")  # a source's own keys; the rest are task.data keys
NOT_PER_SOURCE = ("sources", "streaming", "folds", "fold", "train_split", "max_train_samples")  # one per run (or `split`)


def check_sources(sources: Any, data_keys: list[str], folds: int) -> Optional[list[dict[str, Any]]]:
    """The sources as plain dicts, or None when unset; a ConfigError naming the first mistake."""
    if sources is None or (isinstance(sources, (list, tuple)) and not sources):
        return None
    if hasattr(sources, "items") or isinstance(sources, str) or not hasattr(sources, "__iter__"):
        raise ConfigError(
            "task.data.sources takes a list, e.g. task.data.sources=[{path:a.jsonl,weight:0.7},{path:b.jsonl,weight:0.3}]"
        )
    if folds:
        raise ConfigError("task.data.sources and task.data.folds do not combine: cross-validate one data set")
    allowed = ["path", *MIX_KEYS, *(k for k in data_keys if k not in (*NOT_PER_SOURCE, *MIX_KEYS, "path"))]
    specs = [_check_one(i, spec, allowed) for i, spec in enumerate(sources)]
    modes = {("weight" in s) * "weight" + ("rows" in s) * "rows" for s in specs}
    if len(modes) > 1:
        raise ConfigError(
            "task.data.sources: give every source a weight, or every source rows, or none of them "
            f"(all rows); got {' and '.join(sorted(m or 'neither' for m in modes))}"
        )
    names = [source_name(s) for s in specs]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise ConfigError(f"task.data.sources: two sources are named '{twice}'; give each a name (name=...)")
    return specs


def _check_one(index: int, spec: Any, allowed: list[str]) -> dict[str, Any]:
    where = f"task.data.sources[{index}]"
    if not hasattr(spec, "items"):
        raise ConfigError(f"{where} must be a mapping like {{path:a.jsonl,weight:0.5}}, got {spec!r}")
    spec = {str(k): _plain(v) for k, v in spec.items()}
    unknown = next((k for k in spec if k not in allowed), None)
    if unknown is not None:
        raise ConfigError(f"{where}: unknown key '{unknown}'{closest(unknown, allowed)}; keys: {', '.join(allowed)}")
    if not isinstance(spec.get("path"), str) or not spec["path"]:
        raise ConfigError(f"{where} has no path (a file, folder, builtin:<name> or hub id)")
    if "weight" in spec and "rows" in spec:
        raise ConfigError(f"{where} has both weight and rows: mix by probability (weight) or by row count (rows), not both")
    weight = spec.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
        raise ConfigError(f"{where}: weight must be a number > 0, got {weight!r}")
    rows = spec.get("rows", 1)
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ConfigError(f"{where}: rows must be a whole number >= 1, got {rows!r}")
    if "name" in spec and not re.fullmatch(r"[A-Za-z0-9_.-]+", str(spec["name"])):
        raise ConfigError(f"{where}: name '{spec['name']}' may hold letters, digits, _ . - only (it becomes eval/<name>/loss)")
    return spec


def _plain(value: Any) -> Any:
    """OmegaConf containers as Python lists and dicts."""
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [_plain(v) for v in value]
    return value


def source_name(spec: dict[str, Any]) -> str:
    """A source's name in metrics keys: its `name`, else its file's stem (data/old.jsonl -> old; builtin:sst2 -> sst2)."""
    if spec.get("name"):
        return str(spec["name"])
    path = str(spec["path"]).rstrip("/").split(":", 1)[-1]
    stem = PurePosixPath(path).name.split(".")[0] or "source"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem)
