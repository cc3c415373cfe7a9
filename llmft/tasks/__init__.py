"""Task families: each module knows its head, its features, its loss and its metrics."""

from __future__ import annotations

from typing import Any, Iterable

from llmft.config import TaskConfig, TaskFamily, TextMetric


def get_task(cfg: TaskConfig) -> Any:
    """The task object for `cfg.family`."""
    if cfg.text_metric is TextMetric.bleu:
        from llmft.evaluation.text_metrics import check_bleu_tokenizer

        check_bleu_tokenizer(cfg.bleu_tokenize)  # fails now, not at the first eval
    if cfg.family is TaskFamily.classification:
        from llmft.tasks.classification import ClassificationTask

        return ClassificationTask(cfg)
    if cfg.family is TaskFamily.causal_lm:
        from llmft.tasks.causal_lm import CausalLMTask

        return CausalLMTask(cfg)
    if cfg.family is TaskFamily.seq2seq:
        from llmft.tasks.seq2seq import Seq2SeqTask

        return Seq2SeqTask(cfg)
    from llmft.tasks.extractive_qa import ExtractiveQATask

    return ExtractiveQATask(cfg)


def evaluate(task: Any, model: Any, batches: Iterable[Any], precision: Any, role: str = "eval") -> dict[str, Any]:
    """A task's metrics over all `batches` in one process (under torchrun each rank's `eval_partial` is gathered and
    `eval_metrics` runs once over all of them)."""
    return task.eval_metrics([task.eval_partial(model, batches, precision, role)], role)
