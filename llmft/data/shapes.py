"""Data shapes a task cannot take, named in one line before any of it is tokenized: a column of lists or records
where a text (or one label) is expected, and multiple-choice rows given to a classifier."""

from __future__ import annotations

import re
from typing import Any, Optional

from llmft.errors import UserError

CHOICE_COLUMN = re.compile(r"^(ending|choice|option)_?(\d+)$", re.IGNORECASE)  # SWAG ending0..3, COPA choice1/2
CHOICE_LISTS = ("choices", "endings", "options")  # MMLU-style: one column holding the list of choices


def describe(feature: Any) -> Optional[str]:
    """What a column holds when it is not one string per row ('lists of strings', 'records with fields a, b',
    'numbers (int64)'); None for text."""
    if isinstance(feature, dict):
        return f"records with fields {', '.join(feature)}"
    inner = getattr(feature, "feature", None)
    if inner is not None:  # List / Sequence / LargeList
        return f"lists of {describe(inner) or 'strings'}"
    dtype = getattr(feature, "dtype", None)
    if dtype in ("string", "large_string") or dtype is None:
        return None
    return "class ids" if hasattr(feature, "names") else f"numbers ({dtype})" if dtype != "bool" else "booleans"


def check_text_columns(ds: Any, columns: list[str], where: str) -> None:
    """No text column holds lists or records (numbers and nulls are left to the empty-text rule, as before)."""
    for column in columns:
        held = describe(ds.features[column])
        if held is not None and held.startswith(("lists", "records")):
            first = repr(ds[0][column]) if len(ds) else ""
            first = f" (first row: {first[:60]}{'...' if len(first) > 60 else ''})" if first else ""
            fix = "join each list into one string" if held.startswith("lists") else "name a field that holds text"
            raise UserError(
                f"column '{column}' in {where} holds {held}{first}, not text; {fix}, or name another "
                "column in task.data.text_columns"
            )


def check_label_column(ds: Any, column: str, where: str) -> None:
    """A classification label is one string or integer per row."""
    held = describe(ds.features[column])
    if held is not None and held.startswith(("lists", "records")):
        raise UserError(
            f"column '{column}' in {where} holds {held}; classification takes one label per row "
            "(a string or an integer id), so multi-label data needs one row per label"
        )


def check_not_multiple_choice(ds: Any, label_column: str, where: str) -> None:
    """Refuse rows shaped like multiple choice (numbered ending/choice/option columns, or a list column named
    choices/endings/options) whose integer label indexes one of them: a classifier would learn from one column."""
    choices = _choice_count(ds)
    if choices is None or label_column not in ds.column_names:
        return
    evidence, count = choices
    labels = ds.unique(label_column)
    if not labels or not all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        return
    low = min(labels)
    if low in (0, 1) and max(labels) - low < count:  # 0- or 1-based index of a choice
        raise UserError(
            f"{where} looks like multiple choice ({evidence}, and '{label_column}' holds the index of the "
            "right one): the classification family scores one text or a pair and would learn from one "
            "column only; train it with task=multiple-choice (task.data.text_columns=[<context>], task.endings=[...] if not detected)"
        )


def _choice_count(ds: Any) -> Optional[tuple[str, int]]:
    """('columns ending0..ending3', 4) or ("column 'choices' holds lists of 4", 4), or None."""
    numbered: dict[str, list[str]] = {}
    for name in ds.column_names:
        match = CHOICE_COLUMN.match(name)
        if match:
            numbered.setdefault(match.group(1).lower(), []).append(name)
    for names in numbered.values():
        if len(names) >= 2:
            names = sorted(names, key=lambda n: int(CHOICE_COLUMN.match(n).group(2)))
            return f"columns {names[0]}..{names[-1]}", len(names)
    for name in ds.column_names:
        if name.lower() in CHOICE_LISTS and describe(ds.features[name]) == "lists of strings" and len(ds):
            sizes = {len(v) for v in ds[:100][name] if v is not None}
            if len(sizes) == 1 and (size := sizes.pop()) >= 2:
                return f"column '{name}' holds lists of {size} choices", size
    return None
