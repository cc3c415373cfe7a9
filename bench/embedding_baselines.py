"""Baselines for task=embedding on the bundled test split, scored by the metrics llmft's eval uses: TF-IDF cosine
(fit on the train texts) and the untrained MiniLM-L6 (mean pooling); with a run folder, its eval.json beside them.

    python bench/embedding_baselines.py [outputs/train/<date>/<run>]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from llmft.evaluation.embedding_metrics import retrieval_metrics, similarity_metrics
from llmft.paths import resources_dir

KEYS = ("spearman", "recall@1", "recall@5", "recall@10", "mrr@10")


def _rows(split: str) -> list[dict]:
    return [json.loads(line) for line in (resources_dir() / "embedding" / f"{split}.jsonl").read_text().splitlines()]


def score(embed) -> dict[str, float]:
    """The test split's metrics for `embed(texts) -> np.ndarray`."""
    rows = _rows("test")
    scored, pairs = [r for r in rows if r["score"] is not None], [r for r in rows if r["score"] is None]
    a, b = embed([r["sentence1"] for r in scored]), embed([r["sentence2"] for r in scored])
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    metrics = similarity_metrics(cosine, np.array([r["score"] for r in scored]))
    queries = sorted({r["anchor"] for r in pairs})
    docs = sorted({t for r in pairs for t in (r["positive"], r["negative"])})
    q, d = embed(queries), embed(docs)
    relevant: dict[int, set[int]] = {}
    for r in pairs:
        relevant.setdefault(queries.index(r["anchor"]), set()).add(docs.index(r["positive"]))
    metrics.update(retrieval_metrics(dict(enumerate(q)), dict(enumerate(d)), relevant))
    return {k: metrics[k] for k in KEYS}


def tfidf() -> dict[str, float]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer().fit([r[k] for r in _rows("train") for k in ("anchor", "positive", "negative")])
    return score(lambda texts: vectorizer.transform(texts).toarray())


def untrained_minilm() -> dict[str, float]:
    from llmft.config import ModelConfig
    from llmft.models import backbone
    from llmft.tasks import get_task
    from llmft.tasks.options import EmbeddingOptions

    cfg = ModelConfig(name_or_path="builtin:minilm-l6", max_length=128)
    source, weights = backbone.resolve(cfg)
    tokenizer = backbone.load_tokenizer(source, cfg)
    model = backbone.load_model("AutoModel", weights, tokenizer, cfg)
    task = get_task(EmbeddingOptions())
    return score(lambda texts: task.encode(model, tokenizer, texts, 64, 128, "cpu").numpy())


def main() -> None:
    results = {"TF-IDF cosine": tfidf(), "MiniLM-L6, untrained": untrained_minilm()}
    if len(sys.argv) > 1:
        metrics = json.loads((Path(sys.argv[1]) / "eval.json").read_text())["metrics"]
        results["MiniLM-L6, llmft train recipe=embedding-minilm"] = {k: metrics[k] for k in KEYS}
    print("| model | " + " | ".join(KEYS) + " |")
    print("|---|" + "---|" * len(KEYS))
    for name, metrics in results.items():
        print(f"| {name} | " + " | ".join(f"{metrics[k]:.3f}" for k in KEYS) + " |")


if __name__ == "__main__":
    main()
