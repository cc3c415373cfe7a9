"""Metrics of sentence embeddings, as sentence-transformers' evaluators compute them: Spearman/Pearson of cosine
similarity against gold scores (EmbeddingSimilarityEvaluator) and recall@k / MRR@10 of cosine retrieval
(InformationRetrievalEvaluator). tests/test_embedding.py checks both against the evaluators."""

from __future__ import annotations

from typing import Any

import numpy as np

RECALL_AT = (1, 5, 10)
MRR_AT = 10


def similarity_metrics(cosine: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Spearman and Pearson correlation (scipy) of the pairs' cosine similarities with their gold scores."""
    from scipy.stats import pearsonr, spearmanr

    if len(cosine) < 2:
        return {"spearman": float("nan"), "pearson": float("nan")}
    return {"spearman": float(spearmanr(gold, cosine).statistic), "pearson": float(pearsonr(gold, cosine).statistic)}


def retrieval_metrics(
    queries: dict[int, np.ndarray], corpus: dict[int, np.ndarray], relevant: dict[int, set[int]], chunk: int = 1024
) -> dict[str, Any]:
    """recall@k (the share of a query's relevant documents in its top k, averaged over queries) and MRR@10 (1/rank of
    the first relevant document within the top 10, else 0) of cosine retrieval over `corpus` (id -> embedding)."""
    import torch

    query_ids, corpus_ids = sorted(queries), sorted(corpus)
    docs = torch.nn.functional.normalize(torch.from_numpy(np.stack([corpus[i] for i in corpus_ids])).float(), dim=-1)
    top = min(max(*RECALL_AT, MRR_AT), len(corpus_ids))
    recall = {k: 0.0 for k in RECALL_AT}
    mrr = 0.0
    for start in range(0, len(query_ids), chunk):
        ids = query_ids[start : start + chunk]
        q = torch.nn.functional.normalize(torch.from_numpy(np.stack([queries[i] for i in ids])).float(), dim=-1)
        ranked = torch.topk(q @ docs.T, top, dim=1).indices.tolist()
        for qid, row in zip(ids, ranked):
            hits = [corpus_ids[j] in relevant[qid] for j in row]
            for k in RECALL_AT:
                recall[k] += sum(hits[:k]) / len(relevant[qid])
            first = next((rank for rank, hit in enumerate(hits[:MRR_AT], 1) if hit), None)
            mrr += 1.0 / first if first else 0.0
    n = len(query_ids)
    return {
        **{f"recall@{k}": v / n for k, v in recall.items()},
        f"mrr@{MRR_AT}": mrr / n,
        "queries": n,
        "corpus": len(corpus_ids),
    }
