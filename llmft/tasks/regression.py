"""Sentence-pair (or single-text) regression, e.g. semantic textual similarity: one float score per row, a 1-output
sequence-classification head (`problem_type` regression), MSE loss; Pearson and Spearman (scipy) and MSE."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from llmft.config import DataConfig, Side, TaskConfig
from llmft.data import shapes as data_shapes
from llmft.data.jsonl_input import read_jsonl
from llmft.data.loading import cached_map, check_columns, drop_empty_texts, row_origin, split_source
from llmft.data.nested_fields import lookup
from llmft.data.truncation import bounded_piece, char_budget, encode_rows, truncating_on
from llmft.engine.distill_loss import Distillation
from llmft.engine.distributed import Dist
from llmft.engine.precision import Precision
from llmft.errors import UserError
from llmft.evaluation.metrics import correlations
from llmft.tasks.base import PlainHead, PredictRequest
from llmft.tasks.explanation import Target, class_logit, text_encoding, text_rows
from llmft.tasks.ensemble import average_prediction_partials, mean_of


def to_scores(ds: Any, role: str, cfg: DataConfig) -> Any:
    """The score column as floats in a `labels` column; a value that is not a finite number is one line naming its row."""
    scores = []
    for row, value in enumerate(ds[cfg.label_column]):
        try:
            score = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            score = math.nan
        if not math.isfinite(score):
            raise UserError(
                f"score {value!r} in column '{cfg.label_column}' at {row_origin(ds, row, role, cfg)} is not a "
                "number; regression needs one numeric score per row (fix the row or drop it)"
            )
        scores.append(score)
    return ds.remove_columns(cfg.label_column).add_column("labels", scores)


@dataclass
class RegressionTask(PlainHead):
    """One score per text (or pair): the head predicts it, the loss is its squared error."""

    cfg: TaskConfig
    tokenizer: Any = None  # bound when the task is built (tasks.get_task)
    max_length: int = 512  # model.max_length: rows are cut to it
    data_stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # per split: rows, dropped_empty, truncated, range

    eval_order_free = True  # metrics over (label, prediction) pairs: eval batches may be length-sorted
    train_by_length = True  # a per-row loss: grouping by length only cuts padding
    batch_by_tokens = False
    auto_class_name = "AutoModelForSequenceClassification"
    peft_task_type = "SEQ_CLS"
    pipeline_tag = "text-classification"
    serve_kind = "classify"  # /v1/classify
    packs = False
    per_row_loss = True  # one forward over the rows, a sum of per-row terms: adversarial training and DP-SGD apply
    streams = False

    @property
    def data(self) -> DataConfig:
        return self.cfg.data

    def prepare(self, splits: dict[str, Any]) -> dict[str, Any]:
        """Check columns, read every score as a float (naming a row that is not one), drop empty texts, tokenize."""
        tokenizer, max_length = self.tokenizer, self.max_length
        columns = list(self.data.text_columns)
        out = {}
        for role, ds in splits.items():
            where = f"the {role} split of '{split_source(self.data, role)}'"
            check_columns(ds, [*columns, self.data.label_column], where)
            data_shapes.check_text_columns(ds, columns, where)
            data_shapes.check_label_column(ds, self.data.label_column, where)
            ds = to_scores(ds, role, self.data)  # before any row is dropped: rows keep their file order
            ds, dropped = drop_empty_texts(ds, columns, role, self.data)
            ds = cached_map(
                ds,
                self._encoder(tokenizer, max_length),
                f"regression|{columns}|{max_length}",
                tokenizer,
                batched=True,
                remove_columns=[c for c in ds.column_names if c != "labels"],
                desc=f"tokenize {role}",
            )
            scores = np.asarray(ds["labels"], dtype=np.float64)
            self.data_stats[role] = {
                "rows": len(ds),
                "dropped_empty": dropped,
                "truncated": int(sum(ds["truncated"])),
                "score_min": float(scores.min()),
                "score_max": float(scores.max()),
            }
            out[role] = ds.remove_columns("truncated")
        return out

    def _encoder(self, tokenizer: Any, max_length: int) -> Any:
        columns, side = list(self.data.text_columns), self.cfg.input_truncation_side

        def encode(batch: dict[str, list]) -> dict[str, Any]:
            features, truncated = encode_rows(tokenizer, [batch[c] for c in columns], max_length, side)
            return {**features, "truncated": truncated}

        return encode

    def plan_info(self) -> dict[str, Any]:
        return {"format": "regression (one score per row)", "data": self.data_stats}

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)  # float labels stay float

    def head_kwargs(self) -> dict[str, Any]:
        """One output, saved as a regression head (transformers then scores it with MSE too)."""
        return {"num_labels": 1, "problem_type": "regression"}

    @staticmethod
    def count(batch: dict[str, torch.Tensor]) -> int:
        """One squared error per example."""
        return int(batch["labels"].numel())

    @staticmethod
    def _predictions(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float().squeeze(-1)

    def loss_sum(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Summed squared error of a batch."""
        return F.mse_loss(self._predictions(model, batch), batch["labels"].float(), reduction="sum")

    caches_teacher = True  # a score per row: finetune.cache_teacher=true keeps it
    swaps_words = True  # finetune.augment: text columns (a pair) with a score

    def distill_loss_sum(
        self, model: Any, teacher: Any, batch: dict[str, torch.Tensor], distillation: Distillation
    ) -> torch.Tensor:
        """alpha * squared error to the gold score + (1 - alpha) * squared error to the teacher's score (a score has no
        distribution to soften: the temperature does not apply)."""
        predictions = self._predictions(model, batch)
        with torch.no_grad():
            teacher_scores = self._predictions(teacher, batch)
        return distillation.mix(
            F.mse_loss(predictions, batch["labels"].float(), reduction="sum"),
            F.mse_loss(predictions, teacher_scores, reduction="sum"),
        )

    @torch.no_grad()
    def eval_partial(
        self,
        model: Any,
        batches: Iterable[dict[str, torch.Tensor]],
        precision: Precision,
        role: str = "eval",
        dist: Optional[Dist] = None,
    ) -> dict[str, Any]:
        """One shard's gold scores and predictions."""
        was_training = model.training
        model.eval()
        labels, predictions = [], []
        for batch in batches:
            batch = {k: v.to(precision.device, non_blocking=True) for k, v in batch.items()}
            with precision.autocast():
                predictions.append(self._predictions(model, batch).cpu().numpy().astype(np.float64))
            labels.append(batch["labels"].float().cpu().numpy().astype(np.float64))
        model.train(was_training)
        return {"labels": labels, "predictions": predictions}

    def eval_metrics(self, partials: list[dict[str, Any]], role: str = "eval") -> dict[str, Any]:
        """Pearson, Spearman and MSE over every shard's rows (loss is the MSE)."""
        y_true = np.concatenate([x for p in partials for x in p["labels"]] or [np.zeros(0)])
        y_pred = np.concatenate([x for p in partials for x in p["predictions"]] or [np.zeros(0)])
        if len(y_true) == 0:
            raise UserError("evaluation saw no batches; check trainer.limit_eval_batches and the eval split")
        metrics: dict[str, Any] = correlations(y_true, y_pred)
        metrics["loss"] = metrics["mse"]
        metrics["samples"] = len(y_true)
        return metrics

    def explanation_rows(self, prompt: Optional[str], input: Optional[Path]) -> list[dict[str, Any]]:
        return text_rows(list(self.data.text_columns), prompt, input)

    def explanation_encoding(self, row: dict[str, Any]) -> dict[str, Any]:
        return text_encoding(row, list(self.data.text_columns), self.tokenizer, self.max_length)

    @staticmethod
    def explanation_targets(row: dict[str, Any], logits: Any, target: Optional[str]) -> list[Target]:
        """`llmft explain`: the one score the head gives."""
        if target is not None:
            raise UserError("a regression run has one output, its score: drop target=")
        return [class_logit(0, "score")]

    def member_predictions(self, model: Any, request: PredictRequest) -> list[dict[str, Any]]:
        """What one member of an ensemble gives `ensemble_predictions`: its `predict` rows."""
        return self.predict(model, request)

    @staticmethod
    def ensemble_partials(members: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """The members' eval partials with their scores averaged."""
        return average_prediction_partials(members)

    @staticmethod
    def ensemble_predictions(members: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """Each row with the members' mean score."""
        return [{**row, "score": s} for row, s in zip(members[0], mean_of(members, "score"))]

    def predict(self, model: Any, request: PredictRequest) -> list[dict[str, Any]]:
        """Each row (the prompt as the one text column, or the input file's rows) with its predicted score."""
        tokenizer = self.tokenizer
        columns = list(self.data.text_columns)
        if request.prompt is not None:
            if len(columns) != 1:
                raise UserError(f"this run scores sentence pairs {columns}; pass them as input=<file.jsonl> with one field each")
            rows = [{columns[0]: request.prompt}]
        else:
            rows = read_jsonl(request.input, columns)  # type: ignore[arg-type]
        texts = [[lookup(row, c) for c in columns] for row in rows]
        scores = score(
            model, tokenizer, texts, request.batch_size, self.max_length, request.device, self.cfg.input_truncation_side
        )
        return [{**row, "score": s} for row, s in zip(rows, scores)]


@torch.no_grad()
def score(
    model: Any, tokenizer: Any, rows: list[list[str]], batch_size: int, max_length: int, device: Any, side: Side = Side.right
) -> list[float]:
    """The head's score for each row of text(s), cut as training cut them."""
    model.eval()
    out: list[float] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        columns = [[bounded_piece(t, char_budget(max_length), side)[0] for t in c] for c in zip(*chunk)]
        with truncating_on(tokenizer, side):
            enc = tokenizer(*columns, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        out.extend(model(**{k: v.to(device) for k, v in enc.items()}).logits.float().squeeze(-1).cpu().tolist())
    return out
