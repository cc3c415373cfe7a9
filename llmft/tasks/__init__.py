"""Task families: each module knows its head, its features, its loss and its metrics. The registry maps
`task.family` to its class and its options schema; a family's module is imported only when a run asks for it
(`llmft --help` stays fast)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, NamedTuple

from llmft.config import TaskConfig
from llmft.errors import UserError, closest
from llmft.tasks import options

if TYPE_CHECKING:
    from llmft.tasks.base import Task


class Family(NamedTuple):
    code: str  # "module:Class" of the Task
    options: type[TaskConfig]  # its options schema (llmft/tasks/options.py), `task_schema/<family>` in Hydra


# adding a family is one module, one YAML under conf/task/ (naming `/task_schema@_here_: <family>`) and one line here
FAMILIES: dict[str, Family] = {
    "classification": Family("llmft.tasks.classification:ClassificationTask", options.ClassificationOptions),
    "causal_lm": Family("llmft.tasks.causal_lm:CausalLMTask", options.TextGenerationOptions),
    "seq2seq": Family("llmft.tasks.seq2seq:Seq2SeqTask", options.TextGenerationOptions),
    "extractive_qa": Family("llmft.tasks.extractive_qa:ExtractiveQATask", options.ExtractiveQAOptions),
    "regression": Family("llmft.tasks.regression:RegressionTask", TaskConfig),
    "multiple_choice": Family("llmft.tasks.multiple_choice:MultipleChoiceTask", options.MultipleChoiceOptions),
    "token_classification": Family(
        "llmft.tasks.token_classification:TokenClassificationTask", options.TokenClassificationOptions
    ),
    "embedding": Family("llmft.tasks.embedding:EmbeddingTask", options.EmbeddingOptions),
    "preference": Family("llmft.tasks.preference:PreferenceTask", options.PreferenceOptions),
    "kto": Family("llmft.tasks.kto:KTOTask", options.KTOOptions),
    "reward": Family("llmft.tasks.reward:RewardTask", options.RewardOptions),
}


def family(name: Any) -> Family:
    """The registry entry for `name`; an unknown one is a one-line error."""
    name = str(name)
    if name not in FAMILIES:
        raise UserError(f"unknown task.family '{name}'{closest(name, FAMILIES)}; choose one of: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def task_class(name: Any) -> type:
    """The Task class registered for family `name`."""
    module, cls = family(name).code.split(":")
    return getattr(importlib.import_module(module), cls)


def check_options(name: Any, schema: type) -> type[TaskConfig]:
    """The options schema of family `name`, refusing `schema` when it is another family's: a task YAML of one family
    with `task.family=` set to another carries the wrong options (the error says to pick a task= of that family)."""
    own = family(name).options
    if schema is not TaskConfig and not issubclass(schema, own):
        raise UserError(
            f"task.family={name} needs a task option of that family (its options are {own.__name__}); "
            f"this one carries {schema.__name__}: pick a task= of family {name}"
        )
    return own


def get_task(cfg: TaskConfig, tokenizer: Any = None, max_length: int = 512) -> Task:
    """The task object for `cfg.family`, bound to the tokenizer its rows are encoded with and `model.max_length` they
    are cut to (None: a task asked only what it is, e.g. its head or what it supports)."""
    check_options(cfg.family, type(cfg))
    return task_class(cfg.family)(cfg, tokenizer=tokenizer, max_length=max_length)


def prompt_continuation_task(tokenizer: Any, max_length: int) -> Task:
    """What `llmft generate model=<option>` runs without a run folder: a decoder continues each prompt as written."""
    cfg = options.TextGenerationOptions(family="causal_lm", prompt_template="{prompt}", response_column="prompt")
    return get_task(cfg, tokenizer, max_length)
