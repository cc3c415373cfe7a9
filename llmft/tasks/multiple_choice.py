"""Multiple choice (SWAG-style): a context in one or two columns and N endings, the gold ending's index as label.
Each (context, ending) pair is encoded on its own, the head (AutoModelForMultipleChoice) scores all N of a row at once
(batch, num_choices, seq); cross-entropy over the N scores; metric: accuracy."""

from __future__ import annotations

import json
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
from llmft.data.nested_fields import lookup
from llmft.data.truncation import encode_rows
from llmft.engine.distill_loss import Distillation
from llmft.engine.distributed import Dist
from llmft.engine.precision import Precision
from llmft.errors import UserError
from llmft.evaluation.calibration import expected_calibration_error
from llmft.tasks.base import PlainHead, PredictRequest
from llmft.tasks.explanation import Target
from llmft.tasks.ensemble import average_probability_partials, labels_and_probabilities, mean_of
from llmft.tasks.options import MultipleChoiceOptions

ENDINGS = "endings"  # the column the rows' endings are gathered into


def ending_source(columns: list[str], configured: Optional[list[str]], where: str) -> list[str]:
    """The columns holding the endings: `task.endings` when set (several numbered columns, or one list column), else
    the numbered ending/choice/option columns (ending0..N-1) or the one list column named choices/endings/options."""
    if configured:
        check = [c for c in configured if c not in columns]
        if check:
            raise UserError(f"task.endings names column '{check[0]}', which is not in {where}; columns: {', '.join(columns)}")
        return list(configured)
    numbered: dict[str, list[str]] = {}
    for name in columns:
        match = data_shapes.CHOICE_COLUMN.match(name)
        if match:
            numbered.setdefault(match.group(1).lower(), []).append(name)
    for names in numbered.values():
        if len(names) >= 2:
            return sorted(names, key=lambda n: int(data_shapes.CHOICE_COLUMN.match(n).group(2)))  # type: ignore[union-attr]
    lists = [c for c in columns if c.lower() in data_shapes.CHOICE_LISTS]
    if lists:
        return lists[:1]
    raise UserError(
        f"no endings found in {where} (columns: {', '.join(columns)}); name them ending0..N-1, or one list "
        "column choices/endings, or set task.endings=[col_a,col_b,...] / task.endings=[list_column]"
    )


def row_endings(row: dict[str, Any], source: list[str]) -> Any:
    """A row's endings: the values of the numbered columns, or the one list column's list."""
    if len(source) == 1:
        value = lookup(row, source[0])
        return list(value) if isinstance(value, (list, tuple)) else value
    return [lookup(row, c) for c in source]


def check_endings(endings: Any, label: Any, count: Optional[int], where: str) -> None:
    """The endings are N non-empty texts (N the same for every row) and the label indexes one of them."""
    if not isinstance(endings, list) or len(endings) < 2:
        raise UserError(f"{where}: the endings must be a list of at least two texts, got {endings!r:.80}")
    if count is not None and len(endings) != count:
        raise UserError(f"{where} has {len(endings)} endings where the first row has {count}; every row needs the same number")
    empty = [i for i, e in enumerate(endings) if not isinstance(e, str) or not e.strip()]
    if empty:
        raise UserError(f"{where}: ending {empty[0]} is empty ({endings[empty[0]]!r}); every ending needs a text")
    if label is not None and (
        isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < len(endings)
    ):
        raise UserError(f"{where}: label {label!r} is not the index of one of its {len(endings)} endings (0..{len(endings) - 1})")


def pair_columns(context: list[str], endings: list[str]) -> tuple[list[str], list[str]]:
    """The N (first, second) texts of one row: the context, and the ending after the second context column (SWAG's
    sent2, which starts the ending's sentence) when there is one."""
    first = context[0]
    lead = context[1].strip() if len(context) > 1 else ""
    return [first] * len(endings), [f"{lead} {e}".strip() for e in endings]


@dataclass
class ChoiceCollator:
    """Rows of N encoded choices -> (batch, N, longest) tensors, padded per batch."""

    tokenizer: Any

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        n = len(rows[0]["input_ids"])
        keys = [k for k in rows[0] if k != "labels"]
        flat = [{k: row[k][i] for k in keys} for row in rows for i in range(n)]
        batch = self.tokenizer.pad(flat, padding=True, return_tensors="pt")
        out = {k: v.view(len(rows), n, -1) for k, v in batch.items()}
        if "labels" in rows[0]:
            out["labels"] = torch.tensor([row["labels"] for row in rows], dtype=torch.long)
        return out


@dataclass
class MultipleChoiceTask(PlainHead):
    """Everything the multiple-choice family knows; the loop only sees batches and a loss."""

    cfg: MultipleChoiceOptions
    tokenizer: Any = None  # bound when the task is built (tasks.get_task)
    max_length: int = 512  # model.max_length: rows are cut to it
    num_choices: int = 0
    data_stats: dict[str, dict[str, Any]] = field(default_factory=dict)

    eval_order_free = True  # accuracy does not depend on row order
    train_by_length = False  # a row's "length" is its number of choices: nothing to group by
    batch_by_tokens = False
    auto_class_name = "AutoModelForMultipleChoice"
    peft_task_type = "SEQ_CLS"  # peft has no multiple-choice type; SEQ_CLS keeps the `classifier` head trainable
    pipeline_tag = "multiple-choice"
    serve_kind = None  # not served by llmft serve
    packs = False
    per_row_loss = False  # rows coupled in the loss (or a reference forward): no adversarial training or DP-SGD
    streams = False

    @property
    def data(self) -> DataConfig:
        return self.cfg.data

    def prepare(self, splits: dict[str, Any]) -> dict[str, Any]:
        """Check every row's endings and label (one line naming the row), drop empty contexts, encode N pairs per row."""
        tokenizer, max_length = self.tokenizer, self.max_length
        context = list(self.data.text_columns)
        out = {}
        for role, ds in splits.items():
            where = f"the {role} split of '{split_source(self.data, role)}'"
            check_columns(ds, [*context, self.data.label_column], where)
            data_shapes.check_text_columns(ds, context, where)
            source = ending_source(ds.column_names, self.cfg.endings, where)
            ds = self._gather(ds, source, role)
            ds, dropped = drop_empty_texts(ds, context, role, self.data)
            ds = cached_map(
                ds,
                self._encoder(tokenizer, max_length),
                f"multiple_choice|{context}|{max_length}",
                tokenizer,
                batched=True,
                remove_columns=[c for c in ds.column_names if c != "labels"],
                desc=f"tokenize {role}",
            )
            self.data_stats[role] = {
                "rows": len(ds),
                "dropped_empty": dropped,
                "truncated": int(sum(ds["truncated"])),
                "choices": self.num_choices,
            }
            out[role] = ds.remove_columns("truncated")
        return out

    def _gather(self, ds: Any, source: list[str], role: str) -> Any:
        """The endings as one list column and the label as `labels`, every row checked in file order."""
        endings, labels = [], []
        for row, record in enumerate(ds.select_columns([*dict.fromkeys([*source, self.data.label_column])])):
            ends, label = row_endings(record, source), record[self.data.label_column]
            check_endings(ends, label, self.num_choices or None, row_origin(ds, row, role, self.data))
            self.num_choices = len(ends)
            endings.append(ends)
            labels.append(int(label))
        return (
            ds.remove_columns([c for c in dict.fromkeys([*source, self.data.label_column])])
            .add_column(ENDINGS, endings)
            .add_column("labels", labels)
        )

    def _encoder(self, tokenizer: Any, max_length: int) -> Any:
        context, side = list(self.data.text_columns), self.cfg.input_truncation_side

        def encode(batch: dict[str, list]) -> dict[str, Any]:
            firsts, seconds, sizes = [], [], []
            for i, ends in enumerate(batch[ENDINGS]):
                first, second = pair_columns([batch[c][i] for c in context], ends)
                firsts += first
                seconds += second
                sizes.append(len(ends))
            flat, truncated = encode_rows(tokenizer, [firsts, seconds], max_length, side)
            out: dict[str, list] = {k: [] for k in flat}
            out["truncated"] = []
            start = 0
            for size in sizes:  # regroup: one row holds its N encoded pairs
                for k in flat:
                    out[k].append(flat[k][start : start + size])
                out["truncated"].append(any(truncated[start : start + size]))
                start += size
            return out

        return encode

    def plan_info(self) -> dict[str, Any]:
        return {"format": f"multiple choice ({self.num_choices} endings per row)", "data": self.data_stats}

    def collator(self, tokenizer: Any) -> Any:
        return ChoiceCollator(tokenizer)

    @staticmethod
    def count(batch: dict[str, torch.Tensor]) -> int:
        """One choice per example."""
        return int(batch["labels"].numel())

    @staticmethod
    def _scores(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()  # (batch, num_choices)

    def loss_sum(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Summed cross-entropy over each row's N choices."""
        return F.cross_entropy(self._scores(model, batch), batch["labels"], reduction="sum")

    caches_teacher = True  # choice scores per row: finetune.cache_teacher=true keeps them
    swaps_words = False  # finetune.augment: a question and its choices: swapped words change which choice is right

    def distill_loss_sum(
        self, model: Any, teacher: Any, batch: dict[str, torch.Tensor], distillation: Distillation
    ) -> torch.Tensor:
        """The task's loss mixed with the divergence from the teacher's distribution over each row's choices."""
        scores = self._scores(model, batch)
        with torch.no_grad():
            teacher_scores = self._scores(teacher, batch)
        return distillation.soft_loss_sum(F.cross_entropy(scores, batch["labels"], reduction="sum"), scores, teacher_scores)

    @torch.no_grad()
    def eval_partial(
        self,
        model: Any,
        batches: Iterable[dict[str, torch.Tensor]],
        precision: Precision,
        role: str = "eval",
        dist: Optional[Dist] = None,
    ) -> dict[str, Any]:
        """One shard's summed loss, labels and choice probabilities."""
        was_training = model.training
        model.eval()
        loss_total, n, probs, labels = 0.0, 0, [], []
        for batch in batches:
            batch = {k: v.to(precision.device, non_blocking=True) for k, v in batch.items()}
            with precision.autocast():
                scores = self._scores(model, batch)
            loss_total += F.cross_entropy(scores, batch["labels"], reduction="sum").item()
            n += batch["labels"].numel()
            probs.append(torch.softmax(scores, dim=-1).cpu().numpy())
            labels.append(batch["labels"].cpu().numpy())
        model.train(was_training)
        return {"loss": loss_total, "n": n, "probs": probs, "labels": labels}

    def eval_metrics(self, partials: list[dict[str, Any]], role: str = "eval") -> dict[str, Any]:
        """Accuracy and loss over every shard's rows."""
        n = sum(p["n"] for p in partials)
        if n == 0:
            raise UserError("evaluation saw no batches; check trainer.limit_eval_batches and the eval split")
        y_true = np.concatenate([x for p in partials for x in p["labels"]])
        y_prob = np.concatenate([x for p in partials for x in p["probs"]])

        return {
            "accuracy": float((y_prob.argmax(axis=1) == y_true).mean()),
            "ece": expected_calibration_error(y_true, y_prob),
            "loss": sum(p["loss"] for p in partials) / n,
            "samples": n,
        }

    @staticmethod
    def class_probabilities(partials: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """(labels, choice probabilities) of every shard's rows: what temperature scaling and ensembles read."""
        return labels_and_probabilities(partials)

    def member_predictions(self, model: Any, request: PredictRequest) -> list[dict[str, Any]]:
        """What one member of an ensemble gives `ensemble_predictions`: its `predict` rows."""
        return self.predict(model, request)

    @staticmethod
    def ensemble_partials(members: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """The members' eval partials with their choice probabilities averaged."""
        return average_probability_partials(members)

    def ensemble_predictions(self, members: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """Each row with the members' mean choice probabilities and the choice they give."""
        out = []
        for number, (row, probs) in enumerate(zip(members[0], mean_of(members, "probabilities")), 1):
            given = {k: v for k, v in row.items() if k not in ("choice", "ending", "probabilities")}
            ends = row_endings(given, ending_source(list(given), self.cfg.endings, f"input row {number}"))
            best = max(range(len(probs)), key=probs.__getitem__)
            out.append({**given, "choice": best, "ending": ends[best], "probabilities": probs})
        return out

    def explanation_rows(self, prompt: Optional[str], input: Optional[Path]) -> list[dict[str, Any]]:
        context = list(self.data.text_columns)
        return [_prompt_row(prompt, context)] if prompt is not None else read_jsonl(input, context)  # type: ignore[arg-type]

    def explanation_encoding(self, row: dict[str, Any]) -> dict[str, Any]:
        """The row's N (context, ending) pairs as one batch of shape (1, N, longest)."""
        ends = row_endings(row, ending_source(list(row), self.cfg.endings, "the input row"))
        check_endings(ends, None, None, "the input row")
        first, second = pair_columns([lookup(row, c) for c in self.data.text_columns], ends)
        flat, _ = encode_rows(self.tokenizer, [first, second], self.max_length, self.cfg.input_truncation_side)
        return ChoiceCollator(self.tokenizer)([dict(flat)])

    @staticmethod
    def explanation_targets(row: dict[str, Any], logits: Any, target: Optional[str]) -> list[Target]:
        """The score of choice `target=` (its index), or else of the chosen one, attributed to that choice's input."""
        n = int(logits.shape[1])
        if target is None:
            k = int(logits[0].argmax())
        elif str(target).isdigit() and int(target) < n:
            k = int(target)
        else:
            raise UserError(f"target={target} is not a choice of this row; give its index, 0 to {n - 1}")
        return [Target(lambda out: out[:, k], f"choice {k}", choice=k)]

    def predict(self, model: Any, request: PredictRequest) -> list[dict[str, Any]]:
        """Each row (prompt=<one JSON object>, or the input file's rows: the context columns and the endings) with the
        chosen ending's index, its text and every ending's probability."""
        tokenizer = self.tokenizer
        context = list(self.data.text_columns)
        if request.prompt is not None:
            rows = [_prompt_row(request.prompt, context)]
        else:
            rows = read_jsonl(request.input, context)  # type: ignore[arg-type]
        model.eval()
        out = []
        for number, row in enumerate(rows, 1):
            source = ending_source(list(row), self.cfg.endings, f"input row {number}")
            ends = row_endings(row, source)
            check_endings(ends, None, None, f"input row {number}")
            first, second = pair_columns([lookup(row, c) for c in context], ends)
            flat, _ = encode_rows(tokenizer, [first, second], self.max_length, self.cfg.input_truncation_side)
            batch = ChoiceCollator(tokenizer)([dict(flat)])
            with torch.no_grad():
                p = torch.softmax(self._scores(model, {k: v.to(request.device) for k, v in batch.items()})[0], -1).cpu().tolist()
            best = max(range(len(p)), key=p.__getitem__)
            out.append({**row, "choice": best, "ending": ends[best], "probabilities": p})
        return out


def _prompt_row(prompt: str, context: list[str]) -> dict[str, Any]:
    """`prompt=` for multiple choice is one JSON object with the context columns and the endings."""
    try:
        row = json.loads(prompt)
    except json.JSONDecodeError:
        row = None
    if not isinstance(row, dict) or not all(isinstance(row.get(c), str) for c in context):
        fields = ", ".join(f'"{c}": "..."' for c in context)
        raise UserError(
            f'multiple choice takes one JSON object in single quotes, "prompt=\'{{{fields}, "endings": '
            '["...", "..."]}\'", or input=<file.jsonl> with one such object a line'
        )
    return row
