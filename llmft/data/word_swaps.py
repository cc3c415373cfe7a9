"""finetune.augment's transfer rows (TinyBERT's data augmentation, simplified): copies of each train row in which a
share of the words is swapped for other words of the train split with the same shape (capitalised, lower-case, a
number), so the student sees the teacher's answers on sentences no label covers: names in new contexts, contexts around
new names. Punctuation stays where it was: a word's leading and trailing marks ("good," "(Paris)") are kept around the
word that replaces it, and only bare words enter the pools. A copy keeps its row's other columns; the teacher
relabels it (engine/teacher_labels.py).

Text columns are strings (split on white space, joined with single spaces) or word lists (token classification: the
list keeps its length, so a row's tags stay aligned with its words). Seeded: the same split, columns and seed give the
same copies, so a resumed run rebuilds the rows it trained on.
"""

from __future__ import annotations

import random
import re
from typing import Any, Optional

NUMBER = re.compile(r"\d+([.,:/-]\d+)*")
EDGES = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)  # leading marks, the word, trailing marks ("_" counts as a letter)


def shape(word: str) -> Optional[str]:
    """A word's swap class: 'number', 'upper' (capitalised), 'lower'; None (punctuation, symbols: never swapped)."""
    if NUMBER.fullmatch(word):
        return "number"
    if not word or not word[0].isalpha():
        return None
    return "upper" if word[0].isupper() else "lower"


def _split(word: str) -> tuple[str, str, str]:
    """(leading marks, the bare word, trailing marks): '"Great!' -> ('"', 'Great', '!'); '3-1' and "don't" stay whole."""
    return EDGES.fullmatch(word).groups()


def _words(value: Any) -> list[str]:
    return [str(w) for w in value] if isinstance(value, list) else str(value or "").split()


def word_pools(rows: Any, columns: list[str]) -> dict[str, list[str]]:
    """Each shape's distinct words in the columns, sorted (the draw depends on the data and the seed only)."""
    pools: dict[str, set[str]] = {}
    for column in columns:
        for value in rows[column]:
            for word in _words(value):
                core = _split(word)[1]
                kind = shape(core)
                if kind is not None:
                    pools.setdefault(kind, set()).add(core)
    return {kind: sorted(words) for kind, words in pools.items()}


def swap_words(value: Any, pools: dict[str, list[str]], share: float, rng: random.Random) -> Any:
    """`value` (a string or a word list) with each swappable word replaced, with probability `share`, by a word of
    its shape drawn from `pools`, its leading and trailing marks kept. Anything else (a missing text) is returned as
    it is, so the task drops or refuses a copy exactly where it drops or refuses its row."""
    if not isinstance(value, (str, list)):
        return value
    out = []
    for word in _words(value):
        lead, core, trail = _split(word)
        kind = shape(core)
        swap = kind is not None and rng.random() < share
        out.append(lead + rng.choice(pools[kind]) + trail if swap else word)
    return out if isinstance(value, list) else " ".join(out)


def swapped_copies(rows: Any, columns: list[str], copies: int, share: float, seed: int) -> Any:
    """`copies` swapped copies of every row of the datasets.Dataset `rows` (copy 1 of each row, then copy 2, ...), with
    the other columns as they were."""
    from datasets import Dataset

    pools = word_pools(rows, columns)
    rng = random.Random(seed)
    table = rows.to_dict()
    out: dict[str, list[Any]] = {name: [] for name in rows.column_names}
    for _ in range(copies):
        swapped = {c: [swap_words(v, pools, share, rng) for v in table[c]] for c in columns}
        for name in rows.column_names:
            out[name] += swapped.get(name, table[name])
    return Dataset.from_dict(out, features=rows.features)
