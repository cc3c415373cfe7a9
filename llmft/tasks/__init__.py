"""Task families: each module knows its head, its features, its loss and its metrics. The registry maps
`task.family` to its class; a family is imported only when a run asks for it (`llmft --help` stays fast)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from llmft.config import TaskConfig, TextMetric
from llmft.errors import UserError

if TYPE_CHECKING:
    from llmft.tasks.base import Task

# task.family -> "module:Class"; adding a family is one module, one YAML under conf/task/ and one line here
FAMILIES: dict[str, str] = {
    "classification": "llmft.tasks.classification:ClassificationTask",
    "causal_lm": "llmft.tasks.causal_lm:CausalLMTask",
    "seq2seq": "llmft.tasks.seq2seq:Seq2SeqTask",
    "extractive_qa": "llmft.tasks.extractive_qa:ExtractiveQATask",
}


def task_class(family: Any) -> type:
    """The class registered for `family` (a TaskFamily or its name); an unknown one is a one-line error."""
    name = str(getattr(family, "value", family))
    if name not in FAMILIES:
        from llmft.errors import closest

        raise UserError(f"unknown task.family '{name}'{closest(name, FAMILIES)}; choose one of: {', '.join(FAMILIES)}")
    module, cls = FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_task(cfg: TaskConfig) -> Task:
    """The task object for `cfg.family`."""
    if cfg.text_metric is TextMetric.bleu:
        from llmft.evaluation.text_metrics import check_bleu_tokenizer

        check_bleu_tokenizer(cfg.bleu_tokenize)  # fails now, not at the first eval
    return task_class(cfg.family)(cfg)


def prompt_continuation_task() -> Task:
    """What `llmft generate model=<option>` runs without a run folder: a decoder continues each prompt as written."""
    from llmft.config import TaskFamily

    return get_task(TaskConfig(family=TaskFamily.causal_lm, prompt_template="{prompt}", response_column="prompt"))
