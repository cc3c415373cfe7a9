"""Extractive QA on an encoder (AutoModelForQuestionAnswering), SQuAD-style rows: long contexts are split
into overlapping windows (doc_stride); answers are mapped to tokens and back through offsets; unanswerable
questions point at the first token. Metric: SQuAD exact match / F1."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from llmft.data.jsonl_input import read_jsonl
from llmft.data.loading import check_columns, make_loader, split_source
from llmft.engine.distributed import Dist
from llmft.engine.precision import Precision
from llmft.errors import UserError
from llmft.evaluation.text_metrics import squad_em_f1
from llmft.models.eval_mode import eval_mode
from llmft.tasks.base import PlainHead, PredictRequest
from llmft.tasks.options import ExtractiveQAOptions

COLUMNS = ("question", "context", "answers")


@dataclass
class ExtractiveQATask(PlainHead):
    cfg: ExtractiveQAOptions
    tokenizer: Any = None  # bound when the task is built (tasks.get_task)
    max_length: int = 512  # model.max_length: rows are cut to it
    data_stats: dict[str, dict[str, int]] = field(default_factory=dict)
    windows: dict[str, dict[str, Any]] = field(default_factory=dict)  # per split: offsets and example of each window
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    eval_order_free = True  # eval metrics do not depend on row order: windows carry their index
    train_by_length = False  # trainer.group_by_length's default: window length follows the answer's place (F1 fell)
    batch_by_tokens = False
    auto_class_name = "AutoModelForQuestionAnswering"
    peft_task_type = "QUESTION_ANS"
    pipeline_tag = "question-answering"
    serve_kind = None  # not served by llmft serve
    packs = False  # windows of one context per row
    per_row_loss = True  # one forward over the rows, a sum of per-row terms: adversarial training and DP-SGD apply
    streams = False

    def plan_info(self) -> dict[str, Any]:
        return {"format": "extractive QA", "data": self.data_stats}

    def _windows(self, tokenizer: Any, rows: list[dict[str, Any]], max_length: int) -> Any:
        """Each (question, context) as overlapping windows of the context; a stride that leaves no room is one line."""
        try:
            return tokenizer(
                [r["question"].lstrip() for r in rows],
                [r["context"] for r in rows],
                truncation="only_second",
                max_length=max_length,
                stride=self.cfg.doc_stride,
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
            )
        except Exception as ex:  # the tokenizers library raises a bare Exception/ValueError for it
            if "stride" not in str(ex).lower():
                raise
            raise UserError(
                f"task.doc_stride={self.cfg.doc_stride} leaves no room for the context in model.max_length="
                f"{max_length} tokens beside the question; lower task.doc_stride (e.g. "
                f"{max(8, max_length // 4)}) or raise model.max_length"
            ) from None

    def prepare(self, splits: dict[str, Any]) -> dict[str, Any]:
        tokenizer, max_length = self.tokenizer, self.max_length
        out = {}
        for role, ds in splits.items():
            check_columns(ds, list(COLUMNS), f"the {role} split of '{split_source(self.cfg.data, role)}'")
            rows = ds.to_list()
            enc = self._windows(tokenizer, rows, max_length)
            starts, ends, offsets = [], [], []
            for w, example_index in enumerate(enc["overflow_to_sample_mapping"]):
                sequence_ids = enc.sequence_ids(w)
                window_offsets = [o if sequence_ids[k] == 1 else None for k, o in enumerate(enc["offset_mapping"][w])]
                offsets.append(window_offsets)
                start, end = _answer_tokens(rows[example_index]["answers"], window_offsets)
                starts.append(start)
                ends.append(end)
            from datasets import Dataset

            columns = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
            out[role] = Dataset.from_dict(
                {**columns, "start_positions": starts, "end_positions": ends, "window": list(range(len(starts)))}
            )
            self.windows[role] = {"offsets": offsets, "example": list(enc["overflow_to_sample_mapping"])}
            self.rows[role] = rows
            self.data_stats[role] = {
                "rows": len(rows),
                "windows": len(starts),
                "unanswerable": sum(1 for r in rows if not r["answers"]["text"]),
            }
        return out

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    @staticmethod
    def count(batch: dict[str, torch.Tensor]) -> int:
        return int(batch["start_positions"].numel())

    def loss_sum(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return _span_loss(model(**_inputs(batch)), batch)

    @torch.no_grad()
    def eval_partial(
        self,
        model: Any,
        batches: Iterable[dict[str, torch.Tensor]],
        precision: Precision,
        role: str = "eval",
        dist: Optional[Dist] = None,
    ) -> dict[str, Any]:
        """One shard's span loss and the start/end logits of each window it scored, by window index."""
        total, count, logits = 0.0, 0, {}
        with eval_mode(model):
            for batch in batches:
                batch = {k: v.to(precision.device) for k, v in batch.items()}
                with precision.autocast():
                    out = model(**_inputs(batch))
                total += float(_span_loss(out, batch))
                count += self.count(batch)
                for w, start, end in zip(batch["window"].tolist(), out.start_logits, out.end_logits):
                    logits[w] = (start.float().cpu().numpy(), end.float().cpu().numpy())
        return {"loss": total, "count": count, "logits": logits}

    def eval_metrics(self, partials: list[dict[str, Any]], role: str = "eval") -> dict[str, Any]:
        """SQuAD EM/F1 over the examples whose windows were all scored (limit_eval_batches may cut some)."""
        predictions = self.postprocess(role, {w: pair for p in partials for w, pair in p["logits"].items()})
        scored = sorted(predictions)
        rows = self.rows[role]
        metrics: dict[str, Any] = squad_em_f1([predictions[i] for i in scored], [rows[i]["answers"]["text"] for i in scored])
        metrics.update(loss=sum(p["loss"] for p in partials) / max(sum(p["count"] for p in partials), 1), examples=len(scored))
        metrics["samples_table"] = [
            {"input": rows[i]["question"], "reference": rows[i]["answers"]["text"], "prediction": predictions[i]}
            for i in scored[:20]
        ]
        return metrics

    def predict(self, model: Any, request: PredictRequest) -> list[dict[str, Any]]:
        """Each {question, context} row of the input file with its `answer`."""
        if request.input is None:
            raise UserError(
                "extractive QA reads question/context pairs: pass input=<file.jsonl> with 'question' and 'context' fields"
            )
        rows = read_jsonl(request.input, ["question", "context"])
        return [{**r, "answer": a} for r, a in zip(rows, self.answer(model, rows, request.batch_size, request.device))]

    @torch.no_grad()
    def answer(self, model: Any, rows: list[dict[str, Any]], batch_size: int, device: torch.device) -> list[str]:
        """Answer text for each {question, context} row ('' when the model says it is unanswerable)."""
        from datasets import Dataset

        blank = [{"question": r["question"], "context": r["context"], "answers": {"text": [], "answer_start": []}} for r in rows]
        features = self.prepare({"predict": Dataset.from_list(blank)})["predict"]
        loader = make_loader(features, batch_size, self.collator(self.tokenizer), False, 0)
        model.eval()
        logits = {}
        for batch in loader:
            out = model(**_inputs({k: v.to(device) for k, v in batch.items()}))
            for w, start, end in zip(batch["window"].tolist(), out.start_logits, out.end_logits):
                logits[w] = (start.float().cpu().numpy(), end.float().cpu().numpy())
        answers = self.postprocess("predict", logits)
        return [answers.get(i, "") for i in range(len(rows))]

    def postprocess(self, role: str, logits: dict[int, tuple[np.ndarray, np.ndarray]]) -> dict[int, str]:
        """Best answer text per example over its windows ({window: (start logits, end logits)}); '' when the no-answer
        score wins. Only examples whose windows were all scored get an answer."""
        windows, rows = self.windows[role], self.rows[role]
        best: dict[int, tuple[float, str]] = {}
        null: dict[int, float] = {}
        for w, (start_logits, end_logits) in sorted(logits.items()):
            example, offsets = windows["example"][w], windows["offsets"][w]
            null[example] = min(null.get(example, np.inf), float(start_logits[0] + end_logits[0]))
            context = rows[example]["context"]
            for s in np.argsort(start_logits)[-20:]:
                for e in np.argsort(end_logits)[-20:]:
                    if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                        continue
                    if e < s or e - s + 1 > self.cfg.max_answer_length:
                        continue
                    score = float(start_logits[s] + end_logits[e])
                    if score > best.get(example, (-np.inf, ""))[0]:
                        best[example] = (score, context[offsets[s][0] : offsets[e][1]])
        missing = {example for w, example in enumerate(windows["example"]) if w not in logits}
        complete = set(null) - missing
        return {i: (best[i][1] if i in best and best[i][0] > null[i] else "") for i in complete}


def _inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k not in ("start_positions", "end_positions", "window")}


def _span_loss(out: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed cross-entropy of the start and end positions, averaged over the two."""
    start = F.cross_entropy(out.start_logits.float(), batch["start_positions"], reduction="sum")
    end = F.cross_entropy(out.end_logits.float(), batch["end_positions"], reduction="sum")
    return (start + end) / 2


def _answer_tokens(answers: dict[str, list], offsets: list[Optional[tuple[int, int]]]) -> tuple[int, int]:
    """Token start/end of the first answer inside this window, or (0, 0) (the first token) when it is not."""
    if not answers["text"]:
        return 0, 0
    start_char = answers["answer_start"][0]
    end_char = start_char + len(answers["text"][0])
    context_tokens = [k for k, o in enumerate(offsets) if o is not None]
    if not context_tokens or offsets[context_tokens[0]][0] > start_char or offsets[context_tokens[-1]][1] < end_char:
        return 0, 0
    start = next(k for k in context_tokens if offsets[k][1] > start_char)
    end = next(k for k in reversed(context_tokens) if offsets[k][0] < end_char)
    return start, end
