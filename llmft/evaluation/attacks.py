"""Seeded text perturbations for robustness evaluation (`llmft eval run=<run> attack=charnoise|synonym`).

Both are defined row by row: row i's random stream is seeded by (attack.seed, i), so a row's perturbed text does not
depend on which other rows are scored or in what order, and the same seed, rate and rows give the same texts.

- charnoise: each letter, with probability `rate`, is swapped with the next letter, deleted, or preceded by a random
  lower-case letter (one of the three, equally likely). Typos a reader still reads through.
- synonym: each word found in the bundled list (llmft/resources/attacks/synonyms.jsonl) is replaced, with probability
  `rate`, by one of its synonyms; the replacement takes the word's capitalisation.
"""

from __future__ import annotations

import json
import random
import re
import string
from functools import lru_cache
from typing import Any, Callable

from llmft.trust_config import AttackConfig, AttackKind
from llmft.paths import resources_dir

WORD = re.compile(r"[A-Za-z]+")


def _row_rng(seed: int, row: int) -> random.Random:
    return random.Random(f"{seed}:{row}")  # str seeds hash deterministically (sha512), unlike hash()


def char_noise(text: str, rate: float, rng: random.Random) -> str:
    """Swap, delete or insert at letters, each letter with probability `rate`."""
    chars, out, i = list(text), [], 0
    while i < len(chars):
        c = chars[i]
        if not c.isalpha() or rng.random() >= rate:
            out.append(c)
            i += 1
            continue
        edit = rng.randrange(3)
        if edit == 0 and i + 1 < len(chars) and chars[i + 1].isalpha():  # swap with the next letter
            out += [chars[i + 1], c]
            i += 2
            continue
        if edit == 2:  # insert a letter before this one
            out += [rng.choice(string.ascii_lowercase), c]
        i += 1  # edit 1 (or a swap with no letter after it): delete
    return "".join(out)


@lru_cache(maxsize=1)
def synonyms() -> dict[str, list[str]]:
    """The bundled word -> synonyms list."""
    path = resources_dir() / "attacks" / "synonyms.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {row["word"]: row["synonyms"] for row in rows}


def _cased(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    return word[0].upper() + word[1:] if like[0].isupper() else word


def synonym_swap(text: str, rate: float, rng: random.Random) -> str:
    """Replace listed words by a synonym, each with probability `rate`."""
    table = synonyms()

    def replace(match: re.Match[str]) -> str:
        word = match.group(0)
        options = table.get(word.lower())
        if not options or rng.random() >= rate:
            return word
        return _cased(rng.choice(options), word)

    return WORD.sub(replace, text)


PERTURB: dict[AttackKind, Callable[[str, float, random.Random], str]] = {
    AttackKind.charnoise: char_noise,
    AttackKind.synonym: synonym_swap,
}


def perturb_texts(texts: list[str], cfg: AttackConfig, offset: int = 0) -> list[str]:
    """`texts` perturbed; text k is row `offset + k` of the scored split."""
    perturb = PERTURB[cfg.kind]
    return [
        perturb(text, cfg.rate, _row_rng(cfg.seed, offset + k)) if isinstance(text, str) else text for k, text in enumerate(texts)
    ]


def attack_dataset(dataset: Any, columns: list[str], cfg: AttackConfig) -> tuple[Any, int]:
    """The dataset with its text `columns` perturbed (a pair's two texts with one stream per column), and how many rows
    changed."""

    def apply(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        for n, column in enumerate(columns):
            column_cfg = AttackConfig(cfg.kind, cfg.rate, cfg.seed + 7919 * n)  # pairs: an independent stream per column
            batch[column] = [perturb_texts([t], column_cfg, i)[0] for t, i in zip(batch[column], indices)]
        return batch

    attacked = dataset.map(apply, batched=True, with_indices=True, load_from_cache_file=False)
    changed = sum(any(a[c] != b[c] for c in columns) for a, b in zip(attacked, dataset))
    return attacked, changed
