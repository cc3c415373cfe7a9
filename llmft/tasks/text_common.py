"""Shared by the generative families: rows -> prompt/reference text, token-level loss, generation-based eval."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import torch

from llmft.config import TextMetric
from llmft.data.jsonl_input import read_jsonl
from llmft.data.nested_fields import fill_template, lookup
from llmft.engine.distributed import Dist
from llmft.engine.precision import Precision
from llmft.engine.token_loss import IGNORE  # noqa: F401  (the families import it from here)
from llmft.errors import UserError
from llmft.inference.generation import generate
from llmft.evaluation.text_metrics import check_bleu_tokenizer, perplexity, text_metric_values
from llmft.models.eval_mode import eval_mode
from llmft.tasks.options import TextGenerationOptions
from llmft.tasks.base import Task


@dataclass
class Example:
    """One row as text: what the model sees, what it should produce, and what the metric compares to."""

    prompt: str
    response: str
    references: list[str] = field(default_factory=list)
    messages: Optional[list[dict[str, Any]]] = None  # a chat row: the turns before the answer (prompt is the last user turn)


def check_text_metric(cfg: TextGenerationOptions) -> None:
    """Build the BLEU tokenizer a run will score with, so a missing extra fails before training."""
    if cfg.text_metric is TextMetric.bleu:
        check_bleu_tokenizer(cfg.bleu_tokenize)


def prompt_text(row: dict[str, Any], cfg: TextGenerationOptions) -> str:
    """The row's prompt: `task.prompt_template` with each {column} or {dotted.path} filled in ('' without one)."""
    if cfg.prompt_template is None:
        return ""
    return fill_template(cfg.prompt_template, row)


def response_texts(row: dict[str, Any], cfg: TextGenerationOptions) -> list[str]:
    """The target text(s) of a row; SQuAD-style `answers` give several references (none: unanswerable)."""
    column = cfg.response_column or cfg.data.text_columns[0]
    value = lookup(row, column, "response column")
    if isinstance(value, dict) and "text" in value:
        return [str(t) for t in value["text"]]
    if not isinstance(value, str):
        raise UserError(f"column '{column}' must hold text, got {type(value).__name__}")
    return [value]


def to_example(row: dict[str, Any], cfg: TextGenerationOptions) -> Example:
    references = response_texts(row, cfg)
    return Example(prompt_text(row, cfg), references[0] if references else "", references)


def renders_chat(use_chat_template: bool, tokenizer: Any) -> bool:
    """Rows are wrapped in the tokenizer's chat template: the option is on and the tokenizer has a template."""
    return bool(use_chat_template and getattr(tokenizer, "chat_template", None))


def chat_messages(example: Example, system: Optional[str] = None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": example.prompt}, {"role": "assistant", "content": example.response}]


@torch.no_grad()
def loss_partial(model: Any, batches: Iterable[dict[str, torch.Tensor]], precision: Precision, loss_fn: Any) -> dict[str, Any]:
    """One shard's summed token loss and supervised-token count."""
    total, tokens = 0.0, 0
    with eval_mode(model):
        for batch in batches:
            batch = {k: v.to(precision.device, non_blocking=True) for k, v in batch.items()}
            with precision.autocast():
                total += float(loss_fn.loss_sum(model, batch))
            tokens += loss_fn.count(batch)
    return {"loss": total, "tokens": tokens}


def generation_partial(task: Task, model: Any, role: str, precision: Precision, dist: Optional[Dist] = None) -> dict[str, Any]:
    """Generate for this shard's share (every world-th) of the first `eval_generate_samples` rows of a split."""
    cfg: TextGenerationOptions = task.cfg
    dist = dist or Dist()
    examples = task.examples.get(role, [])[: cfg.eval_generate_samples]
    if cfg.text_metric is TextMetric.none or not examples:
        return {"predictions": {}}
    mine = list(range(dist.rank, len(examples), dist.world))
    prompts = [task.generation_prompt(examples[i]) for i in mine]
    predictions = (
        generate(
            model,
            task.tokenizer,
            prompts,
            cfg.generation,
            precision.device,
            task.max_length,
            add_special_tokens=task.prompt_has_special_tokens is False,
            truncation_side=cfg.input_truncation_side,
        )
        if prompts
        else []
    )  # cut as training cut
    return {"predictions": dict(zip(mine, predictions))}


def generative_partial(
    task: Task,
    model: Any,
    batches: Iterable[dict[str, torch.Tensor]],
    precision: Precision,
    role: str,
    dist: Optional[Dist] = None,
) -> dict[str, Any]:
    return {**loss_partial(model, batches, precision, task), **generation_partial(task, model, role, precision, dist)}


def generative_metrics(task: Task, partials: list[dict[str, Any]], role: str) -> dict[str, Any]:
    """Token-weighted loss and perplexity (exp of total loss / supervised tokens), and the text metric on the
    generated rows, over every shard's partial; keeps a sample table."""
    total, tokens = sum(p["loss"] for p in partials), sum(p["tokens"] for p in partials)
    if tokens == 0:
        raise UserError("evaluation saw no supervised tokens; check the eval split and trainer.limit_eval_batches")
    metrics: dict[str, Any] = {"loss": total / tokens, "perplexity": perplexity(total, tokens), "tokens": tokens}
    predictions = {i: text for p in partials for i, text in p["predictions"].items()}
    if predictions:
        examples = [task.examples[role][i] for i in sorted(predictions)]
        texts = [predictions[i] for i in sorted(predictions)]
        metrics.update(text_metric_values(task.cfg.text_metric, texts, [e.references for e in examples], task.cfg.bleu_tokenize))
        metrics["generated"] = len(texts)
        metrics["samples_table"] = [
            {"input": e.prompt, "reference": e.references, "prediction": p} for e, p in zip(examples, texts)
        ]
    return metrics


def template_fields(template: Optional[str]) -> list[str]:
    """The {field} names of a prompt template, in order, each once."""
    import string

    return list(dict.fromkeys(f for _, f, _, _ in string.Formatter().parse(template or "") if f))


def generation_text(task: Task, prompt: str) -> str:
    """What the model is given for one user prompt (`llmft generate prompt=...`, `llmft serve`'s completions): the
    prompt filled into a one-field `task.prompt_template`, then wrapped as training wrapped it (chat template)."""
    if task.cfg.data.format == "alpaca":  # trained on Alpaca rows: the prompt is an instruction, wrapped as they were
        return task.generation_prompt(task.example({"instruction": prompt, "input": "", "output": ""}))
    fields = template_fields(task.cfg.prompt_template)
    filled = prompt_text({fields[0]: prompt}, task.cfg) if len(fields) == 1 else prompt
    return task.generation_prompt(Example(filled, ""))


def generative_predict(task: Task, model: Any, request: Any) -> list[dict[str, Any]]:
    """`llmft generate` for a generative family: prompts built as in training (template, chat template), generated in
    batches, each row returned with its `generation`; one prompt to the terminal streams."""
    cfg: TextGenerationOptions = task.cfg
    tokenizer = task.tokenizer
    fields = template_fields(cfg.prompt_template)
    if request.prompt is not None and len(fields) > 1:  # one text cannot fill two fields: the model would see no template
        row = ", ".join(f'"{f}": ...' for f in fields)
        raise UserError(
            f"prompt= fills one field, and the run's task.prompt_template has {len(fields)} "
            f"({', '.join(fields)}); give input=<file.jsonl> with rows {{{row}}}"
        )
    if request.prompt is not None:
        rows = [{fields[0]: request.prompt} if len(fields) == 1 else {"prompt": request.prompt}]
        texts = [generation_text(task, request.prompt)]
    else:
        rows = read_jsonl(request.input, fields or [cfg.data.text_columns[0]])
        prompts = [prompt_text(r, cfg) if fields else lookup(r, cfg.data.text_columns[0]) for r in rows]
        texts = [task.generation_prompt(Example(p, "")) for p in prompts]
    streamer = None
    if request.stream:
        from transformers import TextStreamer

        streamer = TextStreamer(tokenizer, skip_prompt=not model.config.is_encoder_decoder, skip_special_tokens=True)
    outputs = generate(
        model,
        tokenizer,
        texts,
        request.generation,
        request.device,
        task.max_length,
        streamer=streamer,
        add_special_tokens=not task.prompt_has_special_tokens,
        truncation_side=cfg.input_truncation_side,
    )  # cut as training cut
    return [{**row, "generation": out} for row, out in zip(rows, outputs)]
