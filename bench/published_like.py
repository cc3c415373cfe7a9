"""Benchmark data in the published layouts of CoNLL-2003 and GLUE STS-B, with their length laws (issue 19, item 11).

The real files cannot be downloaded here, and the bundled sets are too even in length to show what length grouping
does: the bundled NER sentences have 4-18 words, CoNLL-2003's train split has 1-113 (mean 14.5, a fifth of its lines
are 1-4 word headlines, bylines and score lines). These generators join bundled rows (keeping their tags or scores)
into texts whose lengths follow those laws, and write them as the published files are laid out, so llmft reads them
through the same documented options a user passes for the real sets.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from scenarios import CACHE

RESOURCES = Path(__file__).resolve().parent.parent / "llmft" / "resources"
CONLL_SPLITS = {"eng.train": 6000, "eng.testa": 500, "eng.testb": 500}
STSB_SPLITS = {"train.tsv": 5749, "dev.tsv": 500, "test.tsv": 500}  # STS-B's train size; dev cut for time
STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (RESOURCES / name / "train.jsonl").read_text().splitlines()]


def _conll_length(rng: random.Random) -> int:
    """CoNLL-2003-like: 20% short lines (1-4 tokens), the rest log-normal around 17 tokens, capped at 113."""
    if rng.random() < 0.2:
        return rng.randint(1, 4)
    return min(113, max(5, round(rng.lognormvariate(2.75, 0.5))))


def _conll_sentence(rows: list[dict], rng: random.Random) -> list[tuple[str, str]]:
    want, pairs = _conll_length(rng), []
    while len(pairs) < want:
        row = rng.choice(rows)
        pairs += list(zip(row["tokens"], row["ner_tags"]))
    pairs = pairs[:want]
    if pairs[0][1].startswith("I-"):  # a cut inside an entity: the cut part begins it
        pairs[0] = (pairs[0][0], "B-" + pairs[0][1][2:])
    return pairs


def conll2003(seed: int = 0) -> Path:
    """A folder of eng.train / eng.testa / eng.testb in CoNLL-2003's four-column layout (IOB2 tags)."""
    path = CACHE / f"conll2003-like-{seed}"
    if (path / "eng.testb").is_file():
        return path
    rng, rows = random.Random(seed), _rows("ner")
    path.mkdir(parents=True, exist_ok=True)
    for name, count in CONLL_SPLITS.items():
        lines = ["-DOCSTART- -X- -X- O", ""]
        for _ in range(count):
            lines += [f"{word} NN I-NP {tag}" for word, tag in _conll_sentence(rows, rng)] + [""]
        (path / name).write_text("\n".join(lines) + "\n")
    return path


def _sts_text(rows: list[dict], key: str, words: int, rng: random.Random) -> str:
    out: list[str] = []
    while len(out) < words:
        out += rng.choice(rows)[key].split()
    return " ".join(out[:words])


def stsb(seed: int = 0) -> Path:
    """A folder of train.tsv / dev.tsv / test.tsv in GLUE STS-B's ten-column layout. Sentence lengths follow STS-B's
    mix of genres: short image captions (~9 words), news and forum sentences (log-normal, up to ~60 words)."""
    path = CACHE / f"stsb-like-{seed}"
    if (path / "test.tsv").is_file():
        return path
    rng, rows = random.Random(seed), _rows("sts")
    path.mkdir(parents=True, exist_ok=True)
    for name, count in STSB_SPLITS.items():
        lines = [STSB_HEADER]
        for index in range(count):
            row = rng.choice(rows)
            captions = rng.random() < 0.4
            words = max(3, round(rng.gauss(9, 2))) if captions else min(60, max(4, round(rng.lognormvariate(2.7, 0.55))))
            other = max(3, words + rng.randint(-3, 3))
            genre, source = ("main-captions", "MSRvid") if captions else ("main-news", "headlines")
            lines.append(
                f"{index}\t{genre}\t{source}\t2012test\t{index:04d}\tnone\tnone\t"
                f"{_sts_text(rows, 'sentence1', words, rng)}\t{_sts_text(rows, 'sentence2', other, rng)}\t"
                f"{row['score']:.3f}"
            )
        (path / name).write_text("\n".join(lines) + "\n")
    return path
