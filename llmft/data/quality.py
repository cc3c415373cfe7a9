"""Data quality before training: exact and near-duplicate rows (MinHash, datasketch), rows of one split that are also
rows of another (leakage: an eval row that is also a training row), empty or too-short texts; and `task.data.dedup`,
which drops exact duplicates before splits are carved. Rows are compared by their text (every string field, case
and spacing folded), so the checks hold for every task family without knowing it."""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional

from llmft.data.columns import ROW_COLUMN

NUM_PERM = 64  # MinHash permutations: Jaccard estimates within ~0.1 at this size
SHINGLE_WORDS = 3


def row_text(row: dict[str, Any]) -> str:
    """A row's text: its string fields (nested ones too) in column order, lower-cased, spacing folded."""
    parts: list[str] = []
    _strings({k: v for k, v in row.items() if k != ROW_COLUMN}, parts)
    return re.sub(r"\s+", " ", " | ".join(parts)).strip().lower()


def _strings(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _strings(v, out)
    elif value is not None:
        out.append(str(value))


def texts(ds: Any) -> list[str]:
    return [row_text(row) for row in ds]


def exact_duplicates(items: list[str]) -> list[list[int]]:
    """Groups (of two or more row indices) holding the same text."""
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(items):
        groups.setdefault(text, []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def _minhash(text: str) -> Any:
    from datasketch import MinHash

    words = text.split()
    shingles = {" ".join(words[i : i + SHINGLE_WORDS]) for i in range(max(1, len(words) - SHINGLE_WORDS + 1))}
    if len(words) < SHINGLE_WORDS:  # short texts: character 4-grams instead
        shingles = {text[i : i + 4] for i in range(max(1, len(text) - 3))}
    sketch = MinHash(num_perm=NUM_PERM, seed=1)
    sketch.update_batch([s.encode("utf-8") for s in shingles])
    return sketch


def near_duplicates(items: list[str], threshold: float, others: Optional[list[str]] = None) -> list[tuple[int, int, float]]:
    """Pairs (i, j, estimated Jaccard) of near-identical texts that are not identical: within `items`, or between
    `items` (i) and `others` (j) when given. MinHash LSH finds candidates; the estimate must reach `threshold`."""
    from datasketch import MinHashLSH

    if not items or (others is not None and not others):
        return []
    lsh = MinHashLSH(threshold=max(0.3, threshold - 0.2), num_perm=NUM_PERM)  # loose candidates; the estimate decides
    pool = others if others is not None else items
    sketches = [_minhash(t) for t in pool]
    for j, sketch in enumerate(sketches):
        lsh.insert(j, sketch)
    pairs = []
    for i, text in enumerate(items):
        mine = sketches[i] if others is None else _minhash(text)
        for j in lsh.query(mine):
            if (others is None and j <= i) or pool[j] == text:
                continue
            score = mine.jaccard(sketches[j])
            if score >= threshold:
                pairs.append((i, j, round(float(score), 3)))
    return sorted(pairs)


def leakage(train: list[str], other: list[str], threshold: float) -> dict[str, Any]:
    """Rows of another split that are also training rows: exactly (same text) or nearly (MinHash)."""
    seen = set(train)
    exact = [i for i, text in enumerate(other) if text in seen]
    near = near_duplicates(other, threshold, train)
    return {
        "exact": len(exact),
        "exact_rows": exact[:20],
        "near": len({i for i, _, _ in near}),
        "near_pairs": [{"row": i, "train_row": j, "jaccard": s} for i, j, s in near[:20]],
    }


def short_texts(ds: Any, columns: Iterable[str], min_chars: int) -> list[int]:
    """Rows whose text (in `columns` where the data has them, else the whole row) is empty or under `min_chars`."""
    present = [c for c in columns if c in ds.column_names]
    rows = ds.select_columns(present) if present else ds
    return [i for i, row in enumerate(rows) if len(row_text(row)) < min_chars]


def drop_exact_duplicates(ds: Any) -> tuple[Any, int]:
    """`task.data.dedup=true`: the first of each group of identical rows is kept, in file order; how many went."""
    groups = exact_duplicates(texts(ds))
    drop = {i for g in groups for i in g[1:]}
    if not drop:
        return ds, 0
    return ds.select([i for i in range(len(ds)) if i not in drop]), len(drop)


def report(splits: dict[str, Any], columns: list[str], min_chars: int, threshold: float) -> dict[str, Any]:
    """Duplicates within each split, leakage of eval/test rows into train, empty or too-short texts."""
    items = {role: texts(ds) for role, ds in splits.items()}
    out: dict[str, Any] = {"near_duplicate_threshold": threshold, "min_chars": min_chars, "splits": {}, "leakage": {}}
    for role, ds in splits.items():
        groups = exact_duplicates(items[role])
        near = near_duplicates(items[role], threshold)
        short = short_texts(ds, columns, min_chars)
        out["splits"][role] = {
            "rows": len(ds),
            "exact_duplicate_rows": sum(len(g) - 1 for g in groups),
            "exact_duplicate_groups": groups[:20],
            "near_duplicate_pairs": len(near),
            "near_duplicates": [{"rows": [i, j], "jaccard": s} for i, j, s in near[:20]],
            "empty_or_short": len(short),
            "empty_or_short_rows": short[:20],
        }
    for role in (r for r in splits if r != "train"):
        out["leakage"][role] = leakage(items["train"], items[role], threshold)
    return out
