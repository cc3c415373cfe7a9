"""Encoder-decoder text-to-text: summarization, translation, generative QA (AutoModelForSeq2SeqLM)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from llmft.config import Side
from llmft.tasks.options import TextGenerationOptions
from llmft.errors import UserError
from llmft.data.nested_fields import lookup
from llmft.tasks.text_common import (
    check_text_metric,
    IGNORE,
    Example,
    generative_metrics,
    generative_partial,
    generative_predict,
    to_example,
)
from llmft.engine.distill_loss import Distillation, token_distill_sum
from llmft.engine.token_loss import inner_model, token_loss_sum
from llmft.data.truncation import encode_rows
from llmft.tasks.base import PlainHead


@dataclass
class Seq2SeqTask(PlainHead):
    cfg: TextGenerationOptions
    tokenizer: Any = None  # bound when the task is built (tasks.get_task)
    max_length: int = 512  # model.max_length: rows are cut to it
    examples: dict[str, list[Example]] = field(default_factory=dict)
    data_stats: dict[str, dict[str, int]] = field(default_factory=dict)

    eval_order_free = True  # eval metrics do not depend on row order: eval batches are length-sorted
    # trainer.group_by_length's default: the loss is per token and each step is normalised by its own tokens, so
    # grouped steps weight the tokens of short rows more (eval loss measured worse); packing is the speed option
    train_by_length = False
    batch_by_tokens = True  # grouped batches hold equal tokens: the loss averages over tokens, each weighs alike
    auto_class_name = "AutoModelForSeq2SeqLM"
    peft_task_type = "SEQ_2_SEQ_LM"
    pipeline_tag = "text2text-generation"
    serve_kind = "generate"  # /v1/chat/completions and /v1/completions
    packs = False  # an encoder-decoder takes one source per row
    per_row_loss = False  # rows coupled in the loss (or a reference forward): no adversarial training or DP-SGD
    streams = True
    prompt_has_special_tokens = False

    def __post_init__(self) -> None:
        check_text_metric(self.cfg)  # a BLEU tokenizer that cannot load fails now, not at the first eval

    def plan_info(self) -> dict[str, Any]:
        return {"format": "source -> target", "data": self.data_stats}

    def source(self, example: Example, row: dict[str, Any]) -> str:
        return example.prompt if self.cfg.prompt_template else str(lookup(row, self.cfg.data.text_columns[0], "source column"))

    def prepare(self, splits: dict[str, Any]) -> dict[str, Any]:
        tokenizer, max_length = self.tokenizer, self.max_length
        out = {}
        for role, ds in splits.items():
            rows = ds.to_list()
            examples = [to_example(r, self.cfg) for r in rows]
            sources = [self.source(e, r) for e, r in zip(examples, rows)]
            if role != "train":
                self.examples[role] = [Example(s, e.response, e.references) for s, e in zip(sources, examples)][
                    : self.cfg.eval_generate_samples
                ]
            enc, truncated = encode_rows(tokenizer, [sources], max_length, self.cfg.input_truncation_side)
            labels = self.targets([e.response for e in examples])
            if not any(len(t) for t in labels):
                raise UserError(f"no target token in the {role} split is supervised")
            from datasets import Dataset

            out[role] = Dataset.from_dict(
                {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}
            )
            self.data_stats[role] = {
                "rows": len(rows),
                "truncated": sum(truncated),
                "supervised_tokens": sum(len(t) for t in labels),
            }
        return out

    def targets(self, texts: list[str]) -> list[list[int]]:
        """Target ids cut on the right (a summary keeps its start whatever side the source is cut on), each ending in
        exactly one EOS, whether or not the tokenizer appends one itself: the model must learn to stop."""
        limit, eos = self.cfg.max_target_length, self.tokenizer.eos_token_id
        enc, _ = encode_rows(self.tokenizer, [texts], limit, Side.right, as_target=True)
        if eos is None:
            return enc["input_ids"]
        out = []
        for ids in enc["input_ids"]:
            while ids and ids[-1] == eos:
                ids = ids[:-1]
            out.append([*ids[: limit - 1], eos])
        return out

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorForSeq2Seq

        return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE, padding=True)

    def generation_prompt(self, example: Example) -> str:
        return example.prompt

    @staticmethod
    def count(batch: dict[str, torch.Tensor]) -> int:
        return int((batch["labels"] != IGNORE).sum())

    def loss_sum(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        labels = batch["labels"]  # the decoder reads them shifted right (its start token first, pad for IGNORE)
        inputs = {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "decoder_input_ids": inner_model(model).prepare_decoder_input_ids_from_labels(labels=labels),
        }
        return token_loss_sum(model, inputs, labels, chunked=self.cfg.chunked_loss)

    caches_teacher = False  # vocabulary-sized distributions per token: too large for finetune.cache_teacher
    swaps_words = False  # finetune.augment: sources and targets: a swapped word changes what the target says

    def distill_loss_sum(
        self, model: Any, teacher: Any, batch: dict[str, torch.Tensor], distillation: Distillation
    ) -> torch.Tensor:
        """The target-token loss mixed with the divergence from the teacher's distribution over the vocabulary, per
        target token (both decoders read the same shifted targets)."""
        labels = batch["labels"]
        inputs = {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "decoder_input_ids": inner_model(model).prepare_decoder_input_ids_from_labels(labels=labels),
        }
        return token_distill_sum(model, teacher, inputs, labels, distillation, chunked=self.cfg.chunked_loss)

    eval_partial = generative_partial  # one shard's loss sums and generations (text_common)
    eval_metrics = generative_metrics  # loss, perplexity and the text metric over all shards
    predict = generative_predict  # llmft generate: the rows with their generations
