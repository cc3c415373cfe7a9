"""Simple NER baselines on a folder of {tokens, ner_tags} JSONL splits (default: the bundled `builtin:ner`), scored by
the same seqeval entity metrics as `llmft train task=ner`:

- most-frequent tag: each word gets the tag it had most often in train (O for a word train never saw);
- logistic regression on hand-made token features (the word, its shape and affixes, and the words and shapes around
  it), one tag per token, no CRF.

Run:  python bench/ner_baseline.py [--data llmft/resources/ner] [--split test]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path


def read(path: Path) -> list[dict[str, list[str]]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def most_frequent_tag(train: list[dict], rows: list[dict]) -> list[list[str]]:
    counts: dict[str, Counter] = defaultdict(Counter)
    for row in train:
        for token, tag in zip(row["tokens"], row["ner_tags"]):
            counts[token][tag] += 1
    return [[counts[t].most_common(1)[0][0] if t in counts else "O" for t in row["tokens"]] for row in rows]


def shape(word: str) -> str:
    return "".join("X" if c.isupper() else "x" if c.islower() else "d" if c.isdigit() else c for c in word)[:6]


def features(tokens: list[str], i: int) -> dict[str, float]:
    out = {"bias": 1.0}
    for offset in (-2, -1, 0, 1, 2):
        j = i + offset
        word = tokens[j] if 0 <= j < len(tokens) else "<pad>"
        out[f"w{offset}={word.lower()}"] = 1.0
        out[f"s{offset}={shape(word)}"] = 1.0
    word = tokens[i]
    out.update({f"pre3={word[:3].lower()}": 1.0, f"suf3={word[-3:].lower()}": 1.0, "first": float(i == 0)})
    return out


def logistic_regression(train: list[dict], rows: list[dict]) -> list[list[str]]:
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = DictVectorizer()
    x = vectorizer.fit_transform([features(r["tokens"], i) for r in train for i in range(len(r["tokens"]))])
    y = [t for r in train for t in r["ner_tags"]]
    model = LogisticRegression(max_iter=2000).fit(x, y)
    predicted = model.predict(vectorizer.transform([features(r["tokens"], i) for r in rows for i in range(len(r["tokens"]))]))
    out, start = [], 0
    for r in rows:
        out.append(list(predicted[start : start + len(r["tokens"])]))
        start += len(r["tokens"])
    return out


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from llmft.evaluation.entities import entity_metrics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent / "llmft" / "resources" / "ner")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    train, rows = read(args.data / "train.jsonl"), read(args.data / f"{args.split}.jsonl")
    gold = [r["ner_tags"] for r in rows]
    for name, baseline in (("most-frequent tag", most_frequent_tag), ("logistic regression", logistic_regression)):
        start = time.perf_counter()
        m = entity_metrics(gold, baseline(train, rows))
        types = " ".join(f"{k[3:]}={m[k]:.3f}" for k in sorted(m) if k.startswith("f1_"))
        print(
            f"{name:20s} {args.split}: f1={m['f1']:.3f} precision={m['precision']:.3f} recall={m['recall']:.3f} "
            f"accuracy={m['accuracy']:.3f} ({types}) in {time.perf_counter() - start:.1f}s"
        )


if __name__ == "__main__":
    main()
