"""The PyTorch side of an export: the run's checkpoint as the run's task loads it, and its own test rows as batches."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmft.config import TrainConfig
from llmft.data import loading as data
from llmft.export.heads import Head, head_for
from llmft.tasks import task_class
from llmft.tasks.open_checkpoint import open_checkpoint
from llmft.tasks.base import Task


@dataclass
class Source:
    """A run's checkpoint, loaded once: the reference every export is verified against."""

    run_dir: Path
    folder: Path  # the checkpoint folder
    saved: TrainConfig  # the run's config
    task: Task
    model: Any  # in eval mode; a PeftModel for an unmerged LoRA run
    tokenizer: Any
    head: Head

    @property
    def is_adapter(self) -> bool:
        return (self.folder / "adapter_config.json").is_file()

    def plain_model(self) -> Any:
        """The checkpoint as one plain transformers model (a LoRA adapter merged into a copy); the reference stays."""
        if not self.is_adapter:
            return self.model
        return copy.deepcopy(self.model).merge_and_unload().eval()

    def plain_config(self) -> Any:
        """The transformers config of the model (of the base model under an adapter)."""
        return (self.model.get_base_model() if self.is_adapter else self.model).config

    def input_names(self) -> list[str]:
        """What the tokenizer gives and the model's forward takes (input_ids, attention_mask, token_type_ids)."""
        import inspect

        model = self.model.get_base_model() if self.is_adapter else self.model
        accepted = inspect.signature(model.forward).parameters
        names = [n for n in (*self.tokenizer.model_input_names, "attention_mask") if n in accepted and n != "input_ids"]
        return ["input_ids", *dict.fromkeys(names)]  # verification reads the attention mask: always an input


def load_source(run_dir: Path, saved: TrainConfig, folder: Path) -> Source:
    """Load the checkpoint with the run's task (its head, its label ids) and the checkpoint's tokenizer."""
    head = head_for(task_class(saved.task.family).auto_class_name)  # refuse seq2seq before loading anything big
    opened = open_checkpoint(saved.task, folder, saved.model.max_length)
    model = opened.model
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False  # logits only: no KV cache in the exported graph
    return Source(run_dir, folder, saved, opened.task, model.eval(), opened.tokenizer, head)


def test_batches(source: Source, dataset: Any, rows: int, batch_size: int) -> list[dict[str, Any]]:
    """The first `rows` of `dataset` (the run's own test rows, as `llmft eval` scores them) prepared by the run's task,
    as padded batches of the model's inputs (numpy int64)."""
    dataset = dataset.select(range(min(rows, len(dataset))))
    features = source.task.prepare({"test": dataset})["test"]
    loader = data.make_loader(features, batch_size, source.task.collator(source.tokenizer), False, 0)
    names = source.input_names()
    batches = []
    for batch in loader:
        ids = batch["input_ids"]
        batches.append({n: (batch[n] if n in batch else ids * 0).numpy().astype("int64") for n in names})
    return batches
