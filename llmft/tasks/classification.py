"""Text and sentence-pair classification: labels, features, loss, evaluation and prediction."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from llmft.config import DataConfig
from llmft.data import shapes as data_shapes
from llmft.data.jsonl_input import read_jsonl
from llmft.data.loading import cached_map, check_columns, drop_empty_texts, row_origin, split_source
from llmft.data.mixing import SOURCE_COLUMN, count_and_drop
from llmft.data.nested_fields import lookup
from llmft.data.truncation import encode_rows
from llmft.inference.classify import classify
from llmft.engine.distill_loss import Distillation, teacher_logits
from llmft.engine.distributed import Dist
from llmft.engine.precision import Precision
from llmft.errors import UserError
from llmft.evaluation.metrics import classification_metrics, hub_metric_values, load_hub_metrics
from llmft.models.eval_mode import eval_mode
from llmft.tasks.base import PredictRequest
from llmft.tasks.explanation import Target, class_logit, text_encoding, text_rows
from llmft.tasks.ensemble import average_probability_partials, labels_and_probabilities, mean_of
from llmft.tasks.losses import CLASS_LOSSES, ClassLossArgs
from llmft.tasks.options import ClassificationOptions


def _check_label_types(ds: Any, role: str, cfg: DataConfig) -> None:
    """One column holds either strings or integers: a mix (which datasets keeps as raw JSON) names the first row
    whose kind differs from the first row's, by its line in the user's file."""
    if hasattr(ds.features[cfg.label_column], "names"):
        return  # ClassLabel: integer ids by construction
    column = ds[cfg.label_column]
    kinds = [_label_kind(v) for v in column]
    if not kinds or all(k == kinds[0] for k in kinds):
        return
    odd = next(i for i, k in enumerate(kinds) if k != kinds[0])
    raise UserError(
        f"labels in column '{cfg.label_column}' mix {kinds[0]} and {kinds[odd]}: {column[odd]!r} at "
        f"{row_origin(ds, odd, role, cfg)} where {row_origin(ds, 0, role, cfg)} has {column[0]!r}; "
        "write every label the same way (all names or all integer ids)"
    )


def _label_kind(value: Any) -> str:
    if isinstance(value, str):
        return "strings"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return "integers"
    return f"{type(value).__name__} values"


def _label_names(train: Any, cfg: DataConfig) -> list[str]:
    if cfg.label_names:
        return [str(n) for n in cfg.label_names]
    feature = train.features[cfg.label_column]
    if hasattr(feature, "names"):
        return list(feature.names)
    values = train.unique(cfg.label_column)
    if all(isinstance(v, str) for v in values):
        return sorted(values)
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return [str(i) for i in range(int(max(values)) + 1)]
    raise UserError(f"labels in column '{cfg.label_column}' must be strings or integers; got {values[:5]}")


def _to_ids(ds: Any, role: str, names: list[str], cfg: DataConfig) -> Any:
    """Map the label column to ids 0..n-1; a label outside the label set is an error naming it and its line."""
    index = {name: i for i, name in enumerate(names)}
    feature = ds.features[cfg.label_column]
    column = ds[cfg.label_column]
    if hasattr(feature, "names"):  # ClassLabel: ids already, names may be overridden by config
        column = [feature.names[v] if v >= 0 else None for v in column]
    ids = []
    for row, value in enumerate(column):
        key = value if isinstance(value, str) else (names[value] if isinstance(value, int) and 0 <= value < len(names) else value)
        if key not in index:
            raise UserError(
                f"label {value!r} in the {role} split ({row_origin(ds, row, role, cfg)}) is not in the label set {names}; "
                "fix the data or set task.data.label_names"
            )
        ids.append(index[key])
    return ds.remove_columns(cfg.label_column).add_column("labels", ids)


@dataclass
class ClassificationTask:
    """Everything the classification family knows; the loop only sees batches and a loss."""

    cfg: ClassificationOptions
    tokenizer: Any = None  # bound when the task is built (tasks.get_task)
    max_length: int = 512  # model.max_length: rows are cut to it
    label_names: list[str] = field(default_factory=list)
    hub_metrics: list[Any] = field(default_factory=list)
    class_weights: Optional[torch.Tensor] = None  # per-label loss weights (imbalanced data)
    train_label_counts: list[int] = field(default_factory=list)
    data_stats: dict[str, dict[str, int]] = field(default_factory=dict)  # per split: dropped_empty, truncated

    def __post_init__(self) -> None:
        self.hub_metrics = load_hub_metrics(self.cfg.hub_metrics)

    eval_order_free = True  # eval metrics do not depend on row order: eval batches are length-sorted
    train_by_length = True  # trainer.group_by_length's default: a per-row loss, so grouping only cuts padding
    batch_by_tokens = False
    auto_class_name = "AutoModelForSequenceClassification"
    peft_task_type = "SEQ_CLS"
    pipeline_tag = "text-classification"
    serve_kind = "classify"  # /v1/classify
    packs = False  # one short text (or pair) per row
    per_row_loss = True  # one forward over the rows, a sum of per-row terms: adversarial training and DP-SGD apply
    streams = False

    @property
    def data(self) -> DataConfig:
        return self.cfg.data

    # --- data -------------------------------------------------------------------------------
    def prepare(self, splits: dict[str, Any]) -> dict[str, Any]:
        """Check columns, fix the label set from train, map labels to ids and tokenize every split."""
        tokenizer, max_length = self.tokenizer, self.max_length
        columns = [*self.data.text_columns, self.data.label_column]
        for role, ds in splits.items():
            where = f"the {role} split of '{split_source(self.data, role)}'"
            check_columns(ds, columns, where)
            data_shapes.check_text_columns(ds, list(self.data.text_columns), where)
            data_shapes.check_label_column(ds, self.data.label_column, where)
            data_shapes.check_not_multiple_choice(ds, self.data.label_column, where)
            _check_label_types(ds, role, self.data)
        self.label_names = _label_names(splits.get("train"), self.data)
        if len(self.label_names) < 2:
            raise UserError(f"classification needs at least two labels, found {self.label_names}")
        out = {}
        for role, ds in splits.items():
            ds = _to_ids(ds, role, self.label_names, self.data)  # before any row is dropped: rows keep their file order
            ds, dropped = drop_empty_texts(ds, list(self.data.text_columns), role, self.data)
            out[role] = self._tokenize(ds, tokenizer, max_length, role)
            truncated = int(sum(out[role]["truncated"]))
            out[role], sources = count_and_drop(out[role].remove_columns("truncated"))
            self.data_stats[role] = {"rows": len(out[role]), "dropped_empty": dropped, "truncated": truncated}
            if sources is not None:  # task.data.sources: what each gave the mix
                self.data_stats[role]["sources"] = sources
        if "train" in out:
            labels = np.asarray(out["train"]["labels"])
            self.train_label_counts = np.bincount(labels, minlength=len(self.label_names)).tolist()
            self.class_weights = self._class_weights()
        return out

    def _class_weights(self) -> Optional[torch.Tensor]:
        if self.cfg.class_weights is not None:
            if len(self.cfg.class_weights) != len(self.label_names):
                raise UserError(
                    f"task.class_weights has {len(self.cfg.class_weights)} values for {len(self.label_names)} labels {self.label_names}"
                )
            return torch.tensor(self.cfg.class_weights, dtype=torch.float32)
        if self.cfg.balance_classes:
            counts = torch.tensor(self.train_label_counts, dtype=torch.float32).clamp(min=1)
            return counts.sum() / (len(counts) * counts)  # sklearn's "balanced"
        return None

    def plan_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "labels": self.label_names,
            "train_label_counts": self.train_label_counts,
            "data": self.data_stats,
        }
        if self.class_weights is not None:
            info["class_weights"] = [round(w, 4) for w in self.class_weights.tolist()]
        return info

    def sample_weights(self, train: Any) -> Optional[torch.Tensor]:
        """Per-row weights for the weighted sampler: inverse class frequency."""
        if not self.cfg.weighted_sampler:
            return None
        counts = torch.tensor(self.train_label_counts, dtype=torch.float64).clamp(min=1)
        return (1.0 / counts)[torch.tensor(train["labels"])]

    def _tokenize(self, ds: Any, tokenizer: Any, max_length: int, role: str) -> Any:
        text_columns = list(self.data.text_columns)

        def encode(batch: dict[str, list]) -> dict[str, Any]:
            features, truncated = encode_rows(
                tokenizer, [batch[c] for c in text_columns], max_length, self.cfg.input_truncation_side
            )
            return {**features, "truncated": truncated}  # counted, reported in the run plan

        keep = {"labels", SOURCE_COLUMN}
        drop = [c for c in ds.column_names if c not in keep]
        return cached_map(
            ds,
            encode,
            f"classification|{text_columns}|{max_length}",
            tokenizer,
            batched=True,
            remove_columns=drop,
            desc=f"tokenize {role}",
        )

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    # --- model ------------------------------------------------------------------------------
    def head_kwargs(self) -> dict[str, Any]:
        """The label set of the head, in id order."""
        id2label = dict(enumerate(self.label_names))
        return {"num_labels": len(self.label_names), "id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}

    def from_checkpoint(self, model: Any) -> None:
        """Score with the checkpoint's label ids: its label names, in id order, become the label set."""
        id2label = {int(k): v for k, v in model.config.id2label.items()}
        self.cfg.data.label_names = [id2label[i] for i in range(len(id2label))]

    def adapt_model(self, model: Any) -> None:
        return None  # the head trains as loaded

    def bind_model(self, model: Any, run_dir: Any) -> None:
        return None  # the loss needs nothing but the model it is given

    def checkpoint_files(self, folder: Any, model: Any) -> None:
        return None  # transformers alone loads the checkpoint

    def fold_strata(self, train: Any) -> list[Any]:
        """Cross-validation folds keep the label proportions: each row's raw label is its stratum."""
        return list(train[self.data.label_column])

    # --- loss and evaluation ----------------------------------------------------------------
    @staticmethod
    def count(batch: dict[str, torch.Tensor]) -> int:
        """How many items the loss of `batch` sums over (one per example)."""
        return int(batch["labels"].numel())

    def loss_sum(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Summed training loss of a batch (cross-entropy with optional class weights, label smoothing,
        focal term); the loop divides by the items in the whole accumulation group."""
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return self._loss_of_logits(model(**inputs).logits.float(), batch["labels"])

    caches_teacher = True  # class logits per row: finetune.cache_teacher=true keeps them
    swaps_words = True  # finetune.augment: text columns with a label per row

    def distill_loss_sum(
        self, model: Any, teacher: Any, batch: dict[str, torch.Tensor], distillation: Distillation
    ) -> torch.Tensor:
        """The task's loss mixed with the divergence from the teacher's class distribution, per example."""
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits.float()
        return distillation.soft_loss_sum(self._loss_of_logits(logits, batch["labels"]), logits, teacher_logits(teacher, inputs))

    def _loss_of_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        args = ClassLossArgs(self.class_weights, self.cfg.label_smoothing, self.cfg.focal_gamma)
        return CLASS_LOSSES[self.cfg.loss.value](logits, labels, args).sum()

    @torch.no_grad()
    def eval_partial(
        self,
        model: Any,
        batches: Iterable[dict[str, torch.Tensor]],
        precision: Precision,
        role: str = "eval",
        dist: Optional[Dist] = None,
    ) -> dict[str, Any]:
        """One shard's summed loss, labels and class probabilities (never the logits' graphs)."""
        loss_total, n, probs, labels = 0.0, 0, [], []
        with eval_mode(model):
            for batch in batches:
                batch = {k: v.to(precision.device, non_blocking=True) for k, v in batch.items()}
                inputs = {k: v for k, v in batch.items() if k != "labels"}
                with precision.autocast():
                    logits = model(**inputs).logits.float()
                loss_total += F.cross_entropy(logits, batch["labels"], reduction="sum").item()
                n += batch["labels"].numel()
                probs.append(torch.softmax(logits, dim=-1).cpu().numpy())
                labels.append(batch["labels"].cpu().numpy())
        return {"loss": loss_total, "n": n, "probs": probs, "labels": labels}

    def eval_metrics(self, partials: list[dict[str, Any]], role: str = "eval") -> dict[str, Any]:
        """Loss and classification metrics over every shard's partial."""
        n = sum(p["n"] for p in partials)
        if n == 0:
            raise UserError("evaluation saw no batches; check trainer.limit_eval_batches and the eval split")
        y_true = np.concatenate([x for p in partials for x in p["labels"]])
        y_prob = np.concatenate([x for p in partials for x in p["probs"]])
        metrics = classification_metrics(y_true, y_prob, self.label_names)
        if self.hub_metrics:
            metrics.update(hub_metric_values(self.hub_metrics, y_prob.argmax(axis=1).tolist(), y_true.tolist()))
        metrics["loss"] = sum(p["loss"] for p in partials) / n
        metrics["samples"] = n
        return metrics

    @staticmethod
    def class_probabilities(partials: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """(labels, class probabilities) of every shard's rows: what temperature scaling and ensembles read."""
        return labels_and_probabilities(partials)

    def member_predictions(self, model: Any, request: PredictRequest) -> list[dict[str, Any]]:
        """What one member of an ensemble gives `ensemble_predictions`: its `predict` rows."""
        return self.predict(model, request)

    @staticmethod
    def ensemble_partials(members: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """The members' eval partials with their class probabilities averaged."""
        return average_probability_partials(members)

    @staticmethod
    def ensemble_predictions(members: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """Each row with the members' mean probabilities, and the label and score they give."""
        out = []
        for row, probs in zip(members[0], mean_of(members, "probabilities")):
            best = max(probs, key=probs.__getitem__)
            out.append({**row, "label": best, "score": probs[best], "probabilities": probs})
        return out

    def explanation_rows(self, prompt: Optional[str], input: Optional[Path]) -> list[dict[str, Any]]:
        return text_rows(list(self.data.text_columns), prompt, input)

    def explanation_encoding(self, row: dict[str, Any]) -> dict[str, Any]:
        return text_encoding(row, list(self.data.text_columns), self.tokenizer, self.max_length)

    def explanation_targets(self, row: dict[str, Any], logits: Any, target: Optional[str]) -> list[Target]:
        """`llmft explain`: the logit to explain, the named label or else the predicted one."""
        names = list(self.data.label_names or [])
        if target is None:
            best = int(logits[0].argmax())
            return [class_logit(best, names[best] if best < len(names) else str(best))]
        if target not in names:
            raise UserError(f"target={target} is not a label of this run; its labels are {names}")
        return [class_logit(names.index(target), target)]

    # --- llmft generate ---------------------------------------------------------------------
    def predict(self, model: Any, request: PredictRequest) -> list[dict[str, Any]]:
        """Each row (the prompt as the one text column, or the input file's rows) with its label and probabilities."""
        tokenizer = self.tokenizer
        columns = list(self.data.text_columns)
        if request.prompt is not None:
            if len(columns) != 1:
                raise UserError(f"this run classifies sentence pairs {columns}; pass them as input=<file.jsonl>")
            rows = [{columns[0]: request.prompt}]
        else:
            rows = read_jsonl(request.input, columns)  # type: ignore[arg-type]
        predictions = classify(
            model,
            tokenizer,
            [[lookup(row, c) for c in columns] for row in rows],
            request.batch_size,
            self.max_length,
            request.device,
            self.cfg.input_truncation_side,
        )
        return [{**row, **pred} for row, pred in zip(rows, predictions)]
