"""Task families: each module knows its head, its features, its loss and its metrics."""

from __future__ import annotations

from typing import Any

from llmft.config import TaskConfig, TaskFamily


def get_task(cfg: TaskConfig) -> Any:
    """The task object for `cfg.family`."""
    if cfg.family is TaskFamily.classification:
        from llmft.tasks.classification import ClassificationTask

        return ClassificationTask(cfg)
    raise NotImplementedError(f"task family {cfg.family}")  # the Enum makes this unreachable from config
