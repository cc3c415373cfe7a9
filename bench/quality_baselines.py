"""Simple baselines on the bundled STS pairs and multiple-choice items, beside which BENCHMARKS.md reports the
fine-tuned MiniLM-L6: no training, only word statistics. Run: `python bench/quality_baselines.py`."""

from __future__ import annotations

import json
import re

import numpy as np
from scipy import stats
from sklearn.feature_extraction.text import TfidfVectorizer

from llmft.paths import resources_dir


def _rows(name: str, split: str) -> list[dict]:
    return [json.loads(x) for x in (resources_dir() / name / f"{split}.jsonl").read_text().splitlines()]


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def sts() -> None:
    """TF-IDF cosine (fit on train sentences) and word Jaccard overlap, correlated with the gold scores."""
    vectorizer = TfidfVectorizer().fit([r[k] for r in _rows("sts", "train") for k in ("sentence1", "sentence2")])
    for split in ("validation", "test"):
        rows = _rows("sts", split)
        gold = [r["score"] for r in rows]
        a, b = (vectorizer.transform([r[k] for r in rows]) for k in ("sentence1", "sentence2"))
        cosine = np.asarray(a.multiply(b).sum(axis=1)).ravel()  # rows are L2-normalised
        jaccard = [
            len(_words(r["sentence1"]) & _words(r["sentence2"])) / len(_words(r["sentence1"]) | _words(r["sentence2"]))
            for r in rows
        ]
        for name, pred in (("tfidf-cosine", cosine), ("word-jaccard", jaccard)):
            print(
                f"sts {split} {name}: pearson {stats.pearsonr(gold, pred)[0]:.3f} spearman {stats.spearmanr(gold, pred)[0]:.3f}"
            )


def sts_ridge() -> None:
    """Supervised: ridge regression on TF-IDF pair features (a*b and |a-b|), fit on train."""
    from scipy.sparse import hstack
    from sklearn.linear_model import Ridge

    train = _rows("sts", "train")
    vectorizer = TfidfVectorizer(ngram_range=(1, 2)).fit([r[k] for r in train for k in ("sentence1", "sentence2")])

    def features(rows: list[dict]):
        a, b = (vectorizer.transform([r[k] for r in rows]) for k in ("sentence1", "sentence2"))
        return hstack([a.multiply(b), abs(a - b)]).tocsr()

    model = Ridge(alpha=1.0).fit(features(train), [r["score"] for r in train])
    for split in ("validation", "test"):
        rows = _rows("sts", split)
        gold, pred = [r["score"] for r in rows], model.predict(features(rows))
        print(
            f"sts {split} tfidf-ridge: pearson {stats.pearsonr(gold, pred)[0]:.3f} spearman {stats.spearmanr(gold, pred)[0]:.3f}"
        )


def mc_ending_classifier() -> None:
    """Supervised: logistic regression on TF-IDF of (context + ending) text, each ending scored alone, fit on train."""
    from sklearn.linear_model import LogisticRegression

    def texts(rows: list[dict]) -> tuple[list[str], list[int]]:
        pairs = [(f"{r['sent1']} {r['sent2']} {r[f'ending{i}']}", int(i == r["label"])) for r in rows for i in range(4)]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    x, y = texts(_rows("multiple-choice", "train"))
    vectorizer = TfidfVectorizer(ngram_range=(1, 2)).fit(x)
    model = LogisticRegression(max_iter=1000).fit(vectorizer.transform(x), y)
    for split in ("validation", "test"):
        rows = _rows("multiple-choice", split)
        scores = model.predict_proba(vectorizer.transform(texts(rows)[0]))[:, 1].reshape(len(rows), 4)
        accuracy = float((scores.argmax(axis=1) == np.array([r["label"] for r in rows])).mean())
        print(f"multiple-choice {split}: tfidf-logreg accuracy {accuracy:.3f}")


def multiple_choice() -> None:
    """The ending sharing most words with the context, and the longest ending (ties: the first)."""
    for split in ("validation", "test"):
        rows = _rows("multiple-choice", split)
        overlap = longest = 0
        for r in rows:
            endings = [r[f"ending{i}"] for i in range(4)]
            context = _words(f"{r['sent1']} {r['sent2']}")
            overlap += max(range(4), key=lambda i: (len(_words(endings[i]) & context), -i)) == r["label"]
            longest += max(range(4), key=lambda i: (len(endings[i]), -i)) == r["label"]
        print(
            f"multiple-choice {split}: word-overlap accuracy {overlap / len(rows):.3f}, longest-ending {longest / len(rows):.3f}"
        )


if __name__ == "__main__":
    sts()
    sts_ridge()
    multiple_choice()
    mc_ending_classifier()
