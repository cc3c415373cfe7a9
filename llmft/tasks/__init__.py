"""Task families: each module knows its head, its features, its loss and its metrics."""

from __future__ import annotations

from typing import Any

from llmft.config import TaskConfig, TaskFamily


def get_task(cfg: TaskConfig) -> Any:
    """The task object for `cfg.family`."""
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
