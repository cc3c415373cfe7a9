"""Sentence embeddings: a bi-encoder trained on (anchor, positive[, negative]) pairs with in-batch negatives
(MultipleNegativesRankingLoss) or on scored pairs (CoSENTLoss), scored by Spearman of cosine similarity and by
retrieval recall@k / MRR@10. The backbone is a plain AutoModel; sentence-transformers' own Pooling (and Normalize)
modules turn its token states into embeddings, and each checkpoint carries their config (modules.json), so
`sentence_transformers.SentenceTransformer(checkpoint)` embeds exactly as llmft does."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import torch

from llmft.config import Side
from llmft.data.jsonl_input import read_jsonl
from llmft.data.loading import row_origin, split_source
from llmft.data.truncation import encode_rows
from llmft.engine.distributed import Dist
from llmft.engine.precision import Precision
from llmft.errors import UserError
from llmft.evaluation.embedding_metrics import MRR_AT, RECALL_AT, retrieval_metrics, similarity_metrics
from llmft.tasks.base import PlainHead, PredictRequest
from llmft.tasks.embedding_distill import PAIR, SCORED, teacher_term_sum  # PAIR, SCORED: a row's kind
from llmft.tasks.losses import EMBEDDING_LOSSES
from llmft.tasks.options import EmbeddingLoss, EmbeddingOptions

PAIR_SEPARATOR = "|||"  # `llmft generate prompt="text one ||| text two"`: the cosine similarity of the two


@dataclass
class EmbeddingTask(PlainHead):
    """Everything the embedding family knows; the loop only sees batches and a loss."""

    cfg: EmbeddingOptions
    tokenizer: Any = None  # bound when the task is built (tasks.get_task)
    max_length: int = 512  # model.max_length: rows are cut to it
    kinds: dict[str, set[int]] = field(default_factory=dict)  # per split: the row kinds it holds
    data_stats: dict[str, dict[str, int]] = field(default_factory=dict)

    auto_class_name = "AutoModel"  # the bare backbone: its token states are pooled
    peft_task_type = "FEATURE_EXTRACTION"
    pipeline_tag = "sentence-similarity"
    serve_kind = "embed"  # /v1/embeddings
    packs = False
    per_row_loss = False  # rows coupled in the loss (or a reference forward): no adversarial training or DP-SGD
    train_by_length = False  # a row holds two or three texts: there is no one length to group rows by
    batch_by_tokens = False
    eval_order_free = False  # (the metrics are order-free; the eval length sort reads one text per row)
    streams = False

    def __post_init__(self) -> None:
        from sentence_transformers.base.modules import Normalize
        from sentence_transformers.sentence_transformer.modules import Pooling

        self._pooling_class, self._normalize = Pooling, (Normalize() if self.cfg.normalize else None)
        self._pooling: Any = None  # built at the first batch, from the backbone's hidden size

    # --- data -------------------------------------------------------------------------------
    def prepare(self, splits: dict[str, Any]) -> dict[str, Any]:
        """Check every row (its kind, texts and score), give texts retrieval ids and tokenize each text."""
        tokenizer, max_length = self.tokenizer, self.max_length
        import datasets

        out = {}
        for role, ds in splits.items():
            rows = self._rows(ds, role)
            self.kinds[role] = {r["kind"] for r in rows}
            if role == "train":
                self._check_loss(rows)
            features = self._features(rows, tokenizer, max_length)
            truncated = features.pop("truncated")
            out[role] = datasets.Dataset.from_dict(features)
            self.data_stats[role] = {
                "rows": len(rows),
                "pairs": sum(r["kind"] == PAIR for r in rows),
                "scored": sum(r["kind"] == SCORED for r in rows),
                "truncated": truncated,
            }
        if "eval" in self.kinds:
            self._check_select_metric(self.kinds["eval"])
        return out

    def _rows(self, ds: Any, role: str) -> list[dict[str, Any]]:
        """Each row as {kind, a, b, c, score}: a pair when its anchor and positive are set, scored when its score is."""
        data = self.cfg.data
        pair_columns, scored_columns = list(data.text_columns), [*self.cfg.scored_columns, data.label_column]
        names = [c for c in ds.column_names if c != "__row__"]
        has_pairs, has_scored = all(c in names for c in pair_columns), all(c in names for c in scored_columns)
        if not has_pairs and not has_scored:
            raise UserError(
                f"the {role} split of '{split_source(data, role)}' has neither pair columns {pair_columns} nor scored columns "
                f"{scored_columns}; its columns: {', '.join(names)} (name yours with task.data.text_columns, "
                "task.scored_columns and task.data.label_column)"
            )
        negative = self.cfg.negative_column if self.cfg.negative_column in names else None
        keep = [
            c
            for c in dict.fromkeys(
                [*(pair_columns if has_pairs else []), *(scored_columns if has_scored else []), *([negative] if negative else [])]
            )
        ]
        rows = []
        for i, row in enumerate(ds.select_columns(keep)):
            where = lambda: row_origin(ds, i, role, data)  # noqa: E731 - read only on error
            if has_scored and row[data.label_column] is not None:
                a, b = (_text(row[c], c, where) for c in self.cfg.scored_columns)
                rows.append(
                    {"kind": SCORED, "a": a, "b": b, "c": None, "score": _score(row[data.label_column], data.label_column, where)}
                )
            elif has_pairs and any(row[c] is not None for c in pair_columns):
                a, b = (_text(row[c], c, where) for c in pair_columns)
                c = _text(row[negative], negative, where) if negative and row[negative] is not None else None
                rows.append({"kind": PAIR, "a": a, "b": b, "c": c, "score": math.nan})
            else:
                raise UserError(
                    f"{where()} has neither texts in {pair_columns} nor a score in '{data.label_column}'; "
                    "each row is a pair or a scored pair"
                )
        return rows

    def _check_loss(self, rows: list[dict[str, Any]]) -> None:
        """`task.loss=mnrl|cosent` asks for one row shape in train: a row of the other shape is refused."""
        wrong = {EmbeddingLoss.mnrl: SCORED, EmbeddingLoss.cosent: PAIR}.get(self.cfg.loss)
        if wrong is not None and any(r["kind"] == wrong for r in rows):
            shape = "scored pairs" if wrong == SCORED else "(anchor, positive) pairs"
            raise UserError(
                f"task.loss={self.cfg.loss.value} cannot train on the {shape} of the train split; "
                "set task.loss=auto (each row's shape picks its loss)"
            )

    def _check_select_metric(self, kinds: set[int]) -> None:
        """Refuse before training a selection metric the eval split cannot give."""
        given = {"spearman", "pearson"} if SCORED in kinds else set()
        given |= {*(f"recall@{k}" for k in RECALL_AT), f"mrr@{MRR_AT}"} if PAIR in kinds else set()
        metric = self.cfg.select_metric
        if metric in {"spearman", "pearson", f"mrr@{MRR_AT}", *(f"recall@{k}" for k in RECALL_AT)} and metric not in given:
            raise UserError(
                f"task.select_metric={metric}: the eval split has no "
                f"{'scored pairs' if metric in ('spearman', 'pearson') else '(anchor, positive) pairs'}; "
                f"choose one of: {', '.join(sorted(given))}"
            )

    def _features(self, rows: list[dict[str, Any]], tokenizer: Any, max_length: int) -> dict[str, Any]:
        """Token ids of each row's texts, its kind and score, and retrieval ids: a query per distinct anchor text, a
        document per distinct positive or negative text (ids over the whole split, so every eval shard agrees)."""
        texts = [r[k] for k in "abc" for r in rows if r[k] is not None]
        encoded, cut = encode_rows(tokenizer, [texts], max_length, Side.right)
        ids = dict(zip(texts, encoded["input_ids"]))  # the same text tokenizes the same
        queries: dict[str, int] = {}
        docs: dict[str, int] = {}
        pairs = [r for r in rows if r["kind"] == PAIR]
        for r in pairs:
            queries.setdefault(r["a"], len(queries))
            for text in (r["b"], r["c"]):
                if text is not None:
                    docs.setdefault(text, len(docs))
        return {
            "kind": [r["kind"] for r in rows],
            "score": [r["score"] for r in rows],
            "query_id": [queries[r["a"]] if r["kind"] == PAIR else -1 for r in rows],
            "doc_id": [docs[r["b"]] if r["kind"] == PAIR else -1 for r in rows],
            "neg_id": [docs[r["c"]] if r["c"] is not None else -1 for r in rows],
            **{f"{k}_ids": [ids[r[k]] if r[k] is not None else [] for r in rows] for k in "abc"},
            "truncated": sum(cut),
        }

    def plan_info(self) -> dict[str, Any]:
        return {"loss": self.cfg.loss.value, "normalize": self.cfg.normalize, "data": self.data_stats}

    def collator(self, tokenizer: Any) -> Any:
        """Rows -> one padded batch of every text (anchors, then positives, then the rows' negatives: one forward
        pass), with each row's kind, score and retrieval ids."""

        def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
            texts = [r["a_ids"] for r in rows] + [r["b_ids"] for r in rows] + [r["c_ids"] for r in rows if r["c_ids"]]
            batch = tokenizer.pad({"input_ids": texts}, return_tensors="pt")
            return {
                "input_ids": batch["input_ids"],
                "attention_mask": batch["attention_mask"],
                **{k: torch.tensor([r[k] for r in rows]) for k in ("kind", "query_id", "doc_id", "neg_id")},
                "score": torch.tensor([r["score"] for r in rows], dtype=torch.float32),
            }

        return collate

    # --- model ------------------------------------------------------------------------------
    def embed(self, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Sentence embeddings (float32): sentence-transformers' Pooling (mean) over the backbone's token states, then
        its Normalize when task.normalize."""
        tokens = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self._pooling is None:
            self._pooling = self._pooling_class(tokens.shape[-1], pooling_mode="mean")
        features = self._pooling({"token_embeddings": tokens, "attention_mask": attention_mask})
        if self._normalize is not None:
            features = self._normalize(features)
        return features["sentence_embedding"].float()

    def adapt_model(self, model: Any) -> None:
        """Freeze the backbone's pooler (BERT's dense layer over [CLS]): mean pooling never reads it, and data-parallel training refuses a
        parameter that gets no gradient. It stays in the checkpoint as loaded."""
        pooler = getattr(model, "pooler", None)
        if isinstance(pooler, torch.nn.Module):
            pooler.requires_grad_(False)

    def checkpoint_files(self, folder: Path, model: Any) -> None:
        """sentence-transformers' layout beside the Hugging Face files: modules.json (Transformer at the root, then
        Pooling, then Normalize), sentence_bert_config.json (the training max length) and each module's config."""
        import sentence_transformers
        from sentence_transformers.base.modules import Transformer

        modules = [Transformer, self._pooling_class] + ([type(self._normalize)] if self._normalize is not None else [])
        pooling = self._pooling_class(model.config.hidden_size, pooling_mode="mean")
        entries = []
        for idx, module in enumerate(modules):
            path = "" if idx == 0 else f"{idx}_{module.__name__}"
            entries.append({"idx": idx, "name": str(idx), "path": path, "type": f"{module.__module__}.{module.__name__}"})
        (folder / "modules.json").write_text(json.dumps(entries, indent=2) + "\n")
        for entry, saved in zip(entries[1:], [pooling, self._normalize]):
            (folder / entry["path"]).mkdir()
            saved.save(str(folder / entry["path"]))
        config = {"max_seq_length": self.max_length, "do_lower_case": False}
        (folder / "sentence_bert_config.json").write_text(json.dumps(config, indent=2) + "\n")
        meta = {
            "model_type": "SentenceTransformer",
            "similarity_fn_name": "cosine",
            "__version__": {"sentence_transformers": sentence_transformers.__version__},
        }
        (folder / "config_sentence_transformers.json").write_text(json.dumps(meta, indent=2) + "\n")

    # --- loss and evaluation ----------------------------------------------------------------
    @staticmethod
    def count(batch: dict[str, torch.Tensor]) -> int:
        """How many rows the loss of `batch` sums over."""
        return int(batch["kind"].numel())

    def loss_sum(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """MultipleNegativesRankingLoss over the batch's pairs (the other pairs' positives and every hard negative are
        negatives) plus CoSENTLoss over its scored pairs, each times its rows (the loop divides by the rows)."""
        return self._loss_of(self.embed(model, batch["input_ids"], batch["attention_mask"]), batch)

    caches_teacher = False  # the teacher term compares each row with the batch's others: no per-row cache
    uncached_because = "each row with the batch's other rows (in-batch similarities), which a per-row cache cannot hold"
    swaps_words = False  # finetune.augment: a pair's texts: a swapped word changes whether they match

    def distill_loss_sum(self, model: Any, teacher: Any, batch: dict[str, torch.Tensor], distillation: Any) -> torch.Tensor:
        """alpha * the loss above + (1 - alpha) * the teacher term of tasks/embedding_distill.py (the teacher's in-batch
        similarities, softened, and its scored pairs' cosines), both summed over the rows."""
        ours = self.embed(model, batch["input_ids"], batch["attention_mask"])
        with torch.no_grad():
            theirs = self.embed(teacher, batch["input_ids"], batch["attention_mask"])
        teacher_sum = teacher_term_sum(ours, theirs, batch["kind"], self.cfg.scale, distillation)
        return distillation.mix(self._loss_of(ours, batch), teacher_sum)

    def _loss_of(self, emb: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        rows = int(batch["kind"].numel())
        a, b, c = emb[:rows], emb[rows : 2 * rows], emb[2 * rows :]
        pair, scored = batch["kind"] == PAIR, batch["kind"] == SCORED
        total = emb.new_zeros(())
        if pair.any():  # the model argument is only kept by the loss: the math runs on our embeddings
            columns = [a[pair], b[pair]] + ([c] if len(c) else [])  # negatives join the candidates of every anchor
            total = total + EMBEDDING_LOSSES["mnrl"](columns, None, self.cfg.scale) * int(pair.sum())
        if scored.any():
            loss = EMBEDDING_LOSSES["cosent"]([a[scored], b[scored]], batch["score"][scored], self.cfg.scale)
            total = total + loss * int(scored.sum())
        return total

    @torch.no_grad()
    def eval_partial(
        self,
        model: Any,
        batches: Iterable[dict[str, torch.Tensor]],
        precision: Precision,
        role: str = "eval",
        dist: Optional[Dist] = None,
    ) -> dict[str, Any]:
        """One shard's cosine similarities with gold scores, and its queries' and documents' embeddings by id."""
        was_training = model.training
        model.eval()
        cosine, gold, queries, docs, relevant = [], [], {}, {}, []
        for batch in batches:
            rows = int(batch["kind"].numel())
            with precision.autocast():
                emb = self.embed(model, batch["input_ids"].to(precision.device), batch["attention_mask"].to(precision.device))
            emb = emb.cpu()
            a, b, c = emb[:rows], emb[rows : 2 * rows], emb[2 * rows :]
            scored = batch["kind"] == SCORED
            cosine.append(torch.nn.functional.cosine_similarity(a[scored], b[scored]).numpy())
            gold.append(batch["score"][scored].numpy())
            negatives = iter(c.numpy())
            for i in range(rows):
                if int(batch["kind"][i]) != PAIR:
                    continue
                queries[int(batch["query_id"][i])] = a[i].numpy()
                docs[int(batch["doc_id"][i])] = b[i].numpy()
                relevant.append((int(batch["query_id"][i]), int(batch["doc_id"][i])))
                if int(batch["neg_id"][i]) >= 0:
                    docs[int(batch["neg_id"][i])] = next(negatives)
        model.train(was_training)
        return {"cosine": cosine, "gold": gold, "queries": queries, "docs": docs, "relevant": relevant}

    def eval_metrics(self, partials: list[dict[str, Any]], role: str = "eval") -> dict[str, Any]:
        """Spearman/Pearson over every shard's scored pairs; recall@k and MRR@10 of every query over every document."""
        metrics: dict[str, Any] = {}
        cosine = np.concatenate([x for p in partials for x in p["cosine"]] or [np.zeros(0)])
        if len(cosine):
            metrics.update(similarity_metrics(cosine, np.concatenate([x for p in partials for x in p["gold"]])))
        queries = {k: v for p in partials for k, v in p["queries"].items()}
        if queries:
            relevant: dict[int, set[int]] = {}
            for p in partials:
                for query, doc in p["relevant"]:
                    relevant.setdefault(query, set()).add(doc)
            metrics.update(retrieval_metrics(queries, {k: v for p in partials for k, v in p["docs"].items()}, relevant))
        if not metrics:
            raise UserError("evaluation saw no rows; check trainer.limit_eval_batches and the eval split")
        metrics["samples"] = len(cosine) + sum(len(p["relevant"]) for p in partials)
        return metrics

    # --- llmft generate ---------------------------------------------------------------------
    def predict(self, model: Any, request: PredictRequest) -> list[dict[str, Any]]:
        """Each text's embedding; for a pair (prompt "a ||| b", or input rows with text1 and text2) their cosine
        similarity. Input rows with `text` are embedded."""
        tokenizer = self.tokenizer
        if request.prompt is not None:
            parts = [p.strip() for p in request.prompt.split(PAIR_SEPARATOR)]
            if len(parts) > 2 or not all(parts):
                raise UserError(f'prompt= takes one text, or two joined by "{PAIR_SEPARATOR}" for their similarity')
            rows = [{"text": parts[0]}] if len(parts) == 1 else [{"text1": parts[0], "text2": parts[1]}]
        else:
            rows = read_jsonl(request.input, [])  # type: ignore[arg-type]
        texts = [_input_texts(row, request.input, n) for n, row in enumerate(rows, 1)]
        flat = [t for ts in texts for t in ts]
        embeddings = self.encode(model, tokenizer, flat, request.batch_size, self.max_length, request.device)
        out, start = [], 0
        for row, ts in zip(rows, texts):
            vectors = embeddings[start : start + len(ts)]
            start += len(ts)
            if len(ts) == 2:
                out.append({**row, "cosine_similarity": float(torch.nn.functional.cosine_similarity(vectors[0:1], vectors[1:2]))})
            else:
                out.append({**row, "dim": int(vectors.shape[1]), "embedding": vectors[0].tolist()})
        return out

    @torch.no_grad()
    def encode(self, model: Any, tokenizer: Any, texts: list[str], batch_size: int, max_length: int, device: Any) -> torch.Tensor:
        """Embeddings of `texts` (cut at `max_length` tokens on the right, as sentence-transformers cuts them)."""
        model.eval()
        chunks = []
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(
                texts[start : start + batch_size], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
            )
            chunks.append(self.embed(model, enc["input_ids"].to(device), enc["attention_mask"].to(device)).cpu())
        return torch.cat(chunks)


def _text(value: Any, column: str, where: Any) -> str:
    """A row's text, refused in one line when it is missing, empty or not a string."""
    if not isinstance(value, str) or not value.strip():
        raise UserError(
            f"{where()} has {'an empty' if isinstance(value, str) or value is None else 'a non-text'} "
            f"'{column}' ({value!r}); every text of a row must be set"
        )
    return value


def _score(value: Any, column: str, where: Any) -> float:
    """A row's gold score as a float, refused in one line when it is not a finite number."""
    try:
        score = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        score = math.nan
    if not math.isfinite(score):
        raise UserError(f"{where()} has a non-numeric score '{column}' = {value!r}; scores are numbers (higher: more similar)")
    return score


def _input_texts(row: dict[str, Any], path: Any, number: int) -> list[str]:
    """The texts of one `llmft generate` input row: text1 and text2 (a pair), or text."""
    keys = ["text1", "text2"] if "text1" in row or "text2" in row else ["text"]
    if not all(isinstance(row.get(k), str) and row[k].strip() for k in keys):
        raise UserError(f"{path}:{number} needs a non-empty 'text' (embedding) or 'text1' and 'text2' (similarity)")
    return [row[k] for k in keys]
