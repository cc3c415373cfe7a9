"""Open a fine-tuned checkpoint as its run's task sees it: the one loader eval, explain, export, ensembles, generate and
serve share. The task is bound to the checkpoint's tokenizer and the run's `model.max_length`, and has adopted what the
checkpoint fixes (its label ids)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmft.config import TaskConfig
from llmft.models import backbone
from llmft.tasks import get_task, task_class
from llmft.tasks.base import Task


@dataclass
class OpenedCheckpoint:
    task: Task  # bound to the checkpoint's tokenizer and the run's model.max_length
    model: Any  # the checkpoint's model with the task's head (a PeftModel for an unmerged LoRA run)

    @property
    def tokenizer(self) -> Any:
        return self.task.tokenizer

    @property
    def max_length(self) -> int:
        return self.task.max_length


def open_checkpoint(task_cfg: TaskConfig, folder: Path, max_length: int) -> OpenedCheckpoint:
    """The checkpoint in `folder` with the head of `task_cfg`'s family, and that task bound to the checkpoint's
    tokenizer; rows are cut to `max_length` (the run's model.max_length)."""
    model = backbone.load_finetuned(task_class(task_cfg.family).auto_class_name, folder)
    task = get_task(task_cfg, backbone.load_finetuned_tokenizer(folder), max_length)
    task.from_checkpoint(model)  # e.g. score with the checkpoint's label ids
    return OpenedCheckpoint(task, model)
