"""Decoder-only language modelling: instruction/chat SFT (prompt masked out of the loss), raw-text
continued pre-training, and prompted summarization / translation / generative QA."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from llmft.config import Side
from llmft.data import chat_formats, chat_templates
from llmft.data.chat_formats import RowFormat
from llmft.data.loading import cached_map, check_columns, row_origin, split_source
from llmft.data.mixing import SOURCE_COLUMN, count_and_drop
from llmft.data.packing import group_texts, pack
from llmft.data.truncation import bounded_encoding
from llmft.engine.distill_loss import Distillation, token_distill_sum
from llmft.engine.token_loss import token_loss_sum
from llmft.errors import UserError
from llmft.tasks.base import PlainHead
from llmft.tasks.options import TextGenerationOptions, Thinking
from llmft.tasks.text_common import (
    IGNORE,
    Example,
    chat_messages,
    check_text_metric,
    generative_metrics,
    generative_partial,
    generative_predict,
    renders_chat,
    template_fields,
    to_example,
)


def supervised_spans_for_chat(
    tokenizer: Any, messages: list[dict[str, Any]], tools: Optional[list[Any]] = None
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of the assistant turns (what is supervised; an OpenAI
    `weight: 0` turn is context only). Spans come from prefix renderings, so templates without `{% generation %}`
    mask correctly."""
    render = functools.partial(tokenizer.apply_chat_template, tokenize=False, **({"tools": tools} if tools else {}))
    full = render(messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or message.get("weight") == 0:
            continue
        before = render(messages[:i], add_generation_prompt=True)
        through = render(messages[: i + 1])
        if not full.startswith(before) or not full.startswith(through):
            raise UserError(chat_templates.disagreement(full, before if not full.startswith(before) else through))
        spans.append((len(before), len(through)))
    return full, spans


def labels_from_offsets(offsets: list[tuple[int, int]], ids: list[int], spans: list[tuple[int, int]]) -> list[int]:
    """Labels of the joint tokenization: a token is supervised when its characters overlap a supervised span. A prompt
    that ends in a space ("Answer: ") gives its space to the response's first token (byte-level BPE's "Ġfive"), whose
    offsets then start inside the prompt: it is still a response token. Tokens wholly inside the prompt are not;
    an empty-width token (a special token) counts where it stands."""
    return [
        tid if any(start < hi and max(end, start + 1) > lo for lo, hi in spans) else IGNORE
        for tid, (start, end) in zip(ids, offsets)
    ]


@dataclass
class CausalLMTask(PlainHead):
    cfg: TextGenerationOptions
    tokenizer: Any = None  # bound when the task is built (tasks.get_task)
    max_length: int = 512  # model.max_length: rows are cut to it
    examples: dict[str, list[Example]] = field(default_factory=dict)  # rows for generation-based eval
    data_stats: dict[str, dict[str, int]] = field(default_factory=dict)
    row_format: Optional[RowFormat] = None  # Alpaca / ShareGPT / OpenAI rows, told by the train split's columns

    eval_order_free = True  # eval metrics do not depend on row order: eval batches are length-sorted
    # trainer.group_by_length's default: the loss is per token and each step is normalised by its own tokens, so
    # grouped steps weight the tokens of short rows more (eval loss measured worse); packing is the speed option
    train_by_length = False
    batch_by_tokens = True  # grouped batches hold equal tokens: the loss averages over tokens, each weighs alike
    auto_class_name = "AutoModelForCausalLM"
    peft_task_type = "CAUSAL_LM"
    pipeline_tag = "text-generation"
    serve_kind = "generate"  # /v1/chat/completions and /v1/completions
    packs = True  # task.packing: several examples per row, attention kept within each
    per_row_loss = False  # rows coupled in the loss (or a reference forward): no adversarial training or DP-SGD
    streams = True

    def __post_init__(self) -> None:
        check_text_metric(self.cfg)  # a BLEU tokenizer that cannot load fails now, not at the first eval

    @property
    def chat(self) -> bool:
        return renders_chat(self.cfg.use_chat_template, self.tokenizer)

    @property
    def prompt_has_special_tokens(self) -> bool:
        return self.chat

    @property
    def chunked(self) -> bool:
        """Raw text concatenated and cut into max_length blocks (task.chunk_text; unset: unless task.packing is on)."""
        raw = not self.cfg.messages_column and self.cfg.prompt_template is None
        return raw and (self.cfg.chunk_text if self.cfg.chunk_text is not None else not self.cfg.packing)

    def plan_info(self) -> dict[str, Any]:
        mode = "chat" if self.cfg.messages_column else "prompt/response" if self.cfg.prompt_template else "raw text"
        mode = self.row_format.describe(self.chat) if self.row_format else mode + (" in blocks" if self.chunked else "")
        return {"format": mode, "chat_template": self.chat, "packing": self.cfg.packing, "data": self.data_stats}

    @property
    def rows(self) -> Optional[RowFormat]:
        """How rows are read: as prepare() found them, else chat rows in task.messages_column, else the task's own columns."""
        column = self.cfg.messages_column
        if self.row_format is None and self.cfg.data.format == "alpaca":  # generate/serve: nothing was prepared
            return RowFormat("alpaca", None, "task.data.format")
        return self.row_format or (RowFormat("openai", column, "task.messages_column") if column else None)

    @property
    def chat_rows(self) -> bool:
        """Rows read as conversations (ShareGPT, OpenAI messages, Alpaca under a chat template)."""
        return self.rows is not None and (self.rows.name != "alpaca" or self.chat)

    def read_format(self, columns: list[str]) -> Optional[RowFormat]:
        """Alpaca / ShareGPT / OpenAI rows (task.data.format, or told by the columns), or None for the task's own
        columns (prompt template and response column, or raw text) when the data has them."""
        if self.cfg.data.format in chat_formats.ROW_FORMATS or self.cfg.messages_column:
            return chat_formats.detect(columns, self.cfg.data.format, self.cfg.messages_column)
        own = [*template_fields(self.cfg.prompt_template), self.cfg.response_column or self.cfg.data.text_columns[0]]
        return None if all(c.split(".")[0] in columns for c in own) else chat_formats.detect(columns, None, None)

    # --- text -> tokens ---------------------------------------------------------------------
    def messages(self, row: dict[str, Any], where: Callable[[], str]) -> list[dict[str, Any]]:
        """A chat row as messages, refused in one line when the tokenizer cannot render it."""
        assert self.rows is not None
        messages = self.rows.messages(row, where)
        if self.cfg.thinking is Thinking.drop:
            messages = chat_templates.drop_thinking(messages)
        if not self.chat:
            raise UserError(
                f"{self.rows.name} rows are conversations: they need a tokenizer with a chat template "
                "(task.chat_template=<name or .jinja file>, and task.use_chat_template=true)"
            )
        if chat_formats.has_tool_turns(messages) and not chat_formats.template_renders_tools(self.tokenizer.chat_template):
            raise UserError(
                f"{where()}: a tool-call turn, but the chat template in use does not render tool calls "
                "(it never reads tool_calls); drop the tool turns or set task.chat_template to one that does"
            )
        return messages

    def text_and_spans(
        self, row: dict[str, Any], where: Callable[[], str] = lambda: "a row"
    ) -> tuple[str, list[tuple[int, int]], bool]:
        """(full text, supervised char spans, append EOS?) for one row."""
        fmt = self.rows
        if fmt is not None and self.chat_rows:
            text, spans = supervised_spans_for_chat(self.tokenizer, self.messages(row, where), fmt.tools(row))
            return text, spans, False
        example = self.example(row, where)
        if self.cfg.prompt_template is None and fmt is None:  # raw text: every token supervised
            return example.response, [(0, len(example.response))], True
        if self.chat:
            text, spans = supervised_spans_for_chat(self.tokenizer, chat_messages(example))
            return text, spans, False
        return example.prompt + example.response, [(len(example.prompt), len(example.prompt) + len(example.response))], True

    def example(self, row: dict[str, Any], where: Callable[[], str] = lambda: "a row") -> Example:
        """A row as the prompt and the reference answer: a chat row's last assistant turn after the turns before it,
        a prompt/response row as text (an Alpaca row in the published Alpaca prompt)."""
        if self.chat_rows:
            messages = self.messages(row, where)
            last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
            users = [m["content"] for m in messages[:last] if m["role"] == "user"]
            answer = messages[last]["content"]
            return Example(users[-1] if users else "", answer, [answer], messages[:last])
        if self.rows is not None and self.rows.name == "alpaca":
            prompt, response = chat_formats.alpaca_prompt(row, where)
            return Example(prompt, response, [response])
        return to_example(row, self.cfg)

    def encode(
        self, row: dict[str, Any], index: Optional[int] = None, origin: Optional[Callable[[int], str]] = None
    ) -> dict[str, Any]:
        where = (lambda: origin(index)) if origin is not None and index is not None else (lambda: "a row")
        text, spans, add_eos = self.text_and_spans(row, where)
        side = self.cfg.input_truncation_side
        # a bounded piece from the kept end: a 10 MB row costs what max_length tokens do (offsets are relative to it)
        enc, start = bounded_encoding(
            self.tokenizer, text, self.max_length, side, add_special_tokens=not self.chat, return_offsets_mapping=True
        )
        spans = [(lo - start, hi - start) for lo, hi in spans]
        ids, labels = list(enc["input_ids"]), labels_from_offsets(enc["offset_mapping"], enc["input_ids"], spans)
        if add_eos:  # the model must learn to stop, even when pad == eos: labels are set here, not from pad masks
            ids.append(self.tokenizer.eos_token_id)
            labels.append(self.tokenizer.eos_token_id)
        truncated = len(ids) > self.max_length
        if truncated:
            keep = slice(-self.max_length, None) if side is Side.left else slice(0, self.max_length)
            ids, labels = ids[keep], labels[keep]
        return {
            "input_ids": ids,
            "attention_mask": [1] * len(ids),
            "labels": labels,
            "truncated": truncated,
            "supervised": sum(1 for x in labels[1:] if x != IGNORE),
        }

    def encode_documents(self, batch: dict[str, list[Any]]) -> dict[str, list[list[int]]]:
        """Whole documents (no truncation), each followed by EOS; blank ones dropped (a batched map may shrink)."""
        column = self.cfg.response_column or self.cfg.data.text_columns[0]
        odd = next((t for t in batch[column] if t is not None and not isinstance(t, str)), None)
        if odd is not None:
            raise UserError(f"column '{column}' must hold text, got {type(odd).__name__}")
        texts = [t for t in batch[column] if t and t.strip()]
        ids = self.tokenizer(texts, add_special_tokens=not self.chat, verbose=False)["input_ids"] if texts else []
        return {"input_ids": [x + [self.tokenizer.eos_token_id] for x in ids]}

    def chunk(self, ds: Any, role: str) -> Any:
        """One split as max_length blocks of its concatenated documents (packing.group_texts); counts in data_stats."""
        if self.tokenizer.eos_token_id is None:
            raise UserError("raw text is cut into blocks with EOS between documents, but the tokenizer has no EOS token")
        column = self.cfg.response_column or self.cfg.data.text_columns[0]
        documents = cached_map(
            ds,
            self.encode_documents,
            f"causal_lm-documents|{column}",
            self.tokenizer,
            batched=True,
            remove_columns=ds.column_names,
            desc=f"tokenize {role}",
        )
        blocks, stats = group_texts(documents, self.max_length)
        if stats["supervised_tokens"] == 0:
            raise UserError(f"the {role} split has no text to train on (every document of column '{column}' is empty)")
        self.data_stats[role] = {"rows": len(blocks), **stats, "dropped_empty": len(ds) - len(documents)}
        return blocks

    def prepare(self, splits: dict[str, Any]) -> dict[str, Any]:
        tokenizer, max_length = self.tokenizer, self.max_length
        tokenizer.padding_side = "right"
        chat_templates.apply_option(tokenizer, self.cfg.chat_template)  # before any rendering; saved with the checkpoint
        self.row_format = self.read_format(splits.get("train", next(iter(splits.values()))).column_names)  # eval: one split
        fmt = self.row_format
        needed = (
            [fmt.column]
            if fmt and fmt.column
            else []
            if fmt
            else [c for c in (self.cfg.messages_column, self.cfg.response_column) if c]
        )
        out = {}
        for role, ds in splits.items():
            check_columns(ds, needed, f"the {role} split of '{split_source(self.cfg.data, role)}'")
            origin = functools.partial(row_origin, ds, role=role, cfg=self.cfg.data)
            if role != "train":
                self.examples[role] = [
                    self.example(ds[i], functools.partial(origin, i)) for i in range(min(len(ds), self.cfg.eval_generate_samples))
                ]
            if self.chunked and fmt is None:
                out[role] = self.chunk(ds, role)
                continue
            encode = functools.partial(self.encode, origin=origin)
            features = cached_map(
                ds,
                encode,
                f"causal_lm|{self.cfg}|{fmt}|{max_length}",
                tokenizer,
                with_indices=True,
                remove_columns=[c for c in ds.column_names if c != SOURCE_COLUMN],
                desc=f"tokenize {role}",
            )
            unsupervised = sum(1 for n in features["supervised"] if n == 0)
            if unsupervised == len(features):
                raise UserError(
                    f"no token of the {role} split is supervised (prompts fill model.max_length={max_length}?); "
                    "raise model.max_length or set task.truncation_side=left"
                )
            if unsupervised:
                features = features.filter(lambda n: n > 0, input_columns="supervised")
            self.data_stats[role] = {
                "rows": len(features),
                "truncated": int(sum(features["truncated"])),
                "dropped_unsupervised": unsupervised,
                "supervised_tokens": int(sum(features["supervised"])),
            }
            out[role], sources = count_and_drop(features.remove_columns(["truncated", "supervised", "attention_mask"]))
            if sources is not None:  # task.data.sources: what each gave the mix
                self.data_stats[role]["sources"] = sources
            if role == "train":
                self.check_prompt_agreement(ds[0], out[role][0]["input_ids"])
            if role == "train" and self.cfg.packing:
                out[role] = pack(out[role], max_length)
                self.data_stats[role]["packed_rows"] = len(out[role])
        return out

    def collator(self, tokenizer: Any) -> Any:
        """Right padding to the batch's longest row. Packed rows (with position ids) get no attention mask: their
        padding gets positions of its own (a separate, unsupervised segment), so the block-diagonal mask transformers
        builds from the positions keeps real tokens from seeing it."""

        def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
            width = max(len(r["input_ids"]) for r in rows)
            pads = [width - len(r["input_ids"]) for r in rows]
            batch = {
                "input_ids": [r["input_ids"] + [tokenizer.pad_token_id] * p for r, p in zip(rows, pads)],
                "labels": [r["labels"] + [IGNORE] * p for r, p in zip(rows, pads)],
            }
            if "position_ids" in rows[0]:
                batch["position_ids"] = [r["position_ids"] + list(range(p)) for r, p in zip(rows, pads)]
            else:
                batch["attention_mask"] = [[1] * (width - p) + [0] * p for p in pads]
            return {k: torch.tensor(v) for k, v in batch.items()}

        return collate

    def check_prompt_agreement(self, row: dict[str, Any], trained: list[int]) -> None:
        """At the start of a run: the prompt `llmft generate` / `llmft serve` build for a row (its turns before the last
        answer, with the generation prompt) tokenizes as the start of what training saw, token for token."""
        # without a chat template the prompt/response boundary may merge into one token (offsets handle it); a cut row
        # cannot be compared from its start
        raw_text = not self.cfg.messages_column and self.cfg.prompt_template is None and self.row_format is None
        if not self.chat or raw_text or len(trained) >= self.max_length:
            return  # raw text trains as written: no prompt is rendered for it
        prompt = self.generation_prompt(self.example(row))
        ids = self.tokenizer(prompt, add_special_tokens=not self.prompt_has_special_tokens, verbose=False)["input_ids"]
        if trained[: len(ids)] != ids:
            at = next((i for i, (a, b) in enumerate(zip(ids, trained)) if a != b), min(len(ids), len(trained)))
            shown = [repr(self.tokenizer.decode(x[at : at + 3])) for x in (ids, trained)]
            raise UserError(
                f"training and generation render the prompt differently (token {at}: generation has "
                f"{shown[0]}, training {shown[1]}); the model would be served a prompt it never trained on. "
                "Set task.chat_template to a template whose generation prompt starts each answer as its "
                "turns do (or task.use_chat_template=false)"
            )

    def generation_prompt(self, example: Example) -> str:
        """The prompt as training saw it before its first target. Trailing spaces go: in training they were part of
        the response's first token (" five"), which generation must produce, not continue from a lone space."""
        if not self.chat:
            return example.prompt.rstrip(" ")
        messages = example.messages or [{"role": "user", "content": example.prompt}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True).rstrip(" ")

    # --- model, loss, eval --------------------------------------------------------------------
    @staticmethod
    def count(batch: dict[str, torch.Tensor]) -> int:
        """Supervised next-token positions in the batch (the unit of the loss)."""
        return int((batch["labels"][:, 1:] != IGNORE).sum())

    def loss_sum(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
        # position t predicts token t+1: shift the labels, not the logits (slicing the logits would copy them all);
        # no KV cache (token_loss_sum): it would also switch off packed-sequence masking
        targets = torch.nn.functional.pad(batch["labels"][:, 1:], (0, 1), value=IGNORE)
        return token_loss_sum(model, inputs, targets, chunked=self.cfg.chunked_loss)

    caches_teacher = False  # vocabulary-sized distributions per token: too large for finetune.cache_teacher
    swaps_words = False  # finetune.augment: prompts and responses: a swapped word changes what the response answers

    def distill_loss_sum(
        self, model: Any, teacher: Any, batch: dict[str, torch.Tensor], distillation: Distillation
    ) -> torch.Tensor:
        """The next-token loss mixed with the divergence from the teacher's next-token distribution, per supervised
        token (chunked over the vocabulary like the loss)."""
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
        targets = torch.nn.functional.pad(batch["labels"][:, 1:], (0, 1), value=IGNORE)
        return token_distill_sum(model, teacher, inputs, targets, distillation, chunked=self.cfg.chunked_loss)

    eval_partial = generative_partial  # one shard's loss sums and generations (text_common)
    eval_metrics = generative_metrics  # loss, perplexity and the text metric over all shards
    predict = generative_predict  # llmft generate: the rows with their generations
