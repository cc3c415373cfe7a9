"""Several LoRA runs behind one server (`llmft serve runs=[a,b]`): runs kept as adapters (finetune.merge=false) on one
base model load into one peft model, each under its own adapter name; every run is a model id in /v1/models and a
request's `model` chooses the adapter its batch decodes with (peft's set_adapter)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmft.errors import UserError
from llmft.tasks.base import Task


def adapter_config(folder: Path) -> dict[str, Any]:
    """The adapter_config.json of a checkpoint folder; a run that is not an adapter is refused naming the fix."""
    path = folder / "adapter_config.json"
    if not path.is_file():
        raise UserError(
            f"runs=[...] serves LoRA runs kept as adapters on one base; {folder} is a whole model (train with "
            "finetune=lora finetune.merge=false, or serve it alone with run=)"
        )
    return json.loads(path.read_text())


def load_adapters(model: Any, task: Task, first: Path, others: dict[str, tuple[Path, Any]]) -> dict[str, str]:
    """Load the other runs' adapters ({model id: (checkpoint folder, its task)}) into `model` (the first run's peft
    model, adapter "default"); returns {model id: peft adapter name} for the others. Their base and task must be the
    first run's."""
    if task.serve_kind != "generate":
        raise UserError(f"runs=[...] serves generative runs as adapters; {first} is {task.pipeline_tag} (serve it with run=)")
    base = adapter_config(first).get("base_model_name_or_path")
    names: dict[str, str] = {}
    for i, (model_id, (folder, other_task)) in enumerate(others.items(), start=1):
        other_base = adapter_config(folder).get("base_model_name_or_path")
        if other_base != base:
            raise UserError(f"runs=[...] share one base model: {first} is on {base}, {folder} on {other_base}")
        if other_task.serve_kind != task.serve_kind or other_task.auto_class_name != task.auto_class_name:
            raise UserError(
                f"runs=[...] serve one kind of task: {first} is {task.pipeline_tag}, {folder} {other_task.pipeline_tag}"
            )
        names[model_id] = f"run{i}"
        model.load_adapter(str(folder), adapter_name=names[model_id])
    model.set_adapter("default")
    return names
