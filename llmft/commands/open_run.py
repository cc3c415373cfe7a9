"""Open a finished run (or a pretrained decoder) for prediction: the one loader `llmft generate` and `llmft serve`
share, so neither verb imports the other."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from llmft import tasks
from llmft.commands.common import checkpoint_dir, load_run_config
from llmft.config import GenerateConfig, TrainConfig
from llmft.deploy_config import ServeConfig
from llmft.errors import UserError
from llmft.models import backbone
from llmft.runs.run_folder import RunFolder
from llmft.tasks.open_checkpoint import open_checkpoint


def load_predictor(config: GenerateConfig | ServeConfig) -> tuple[Any, Any, Any, int]:
    """(task, model, tokenizer, max_length): a run's checkpoint with the run's task, or a pretrained decoder that
    continues prompts as written (`llmft generate` and `llmft serve` load alike)."""
    if config.run is not None:
        run_dir = Path(config.run)
        saved = saved_run_config(run_dir)
        folder = checkpoint_dir(run_dir, config.checkpoint)
        opened = open_checkpoint(saved.task, folder, saved.model.max_length)
        return opened.task, opened.model, opened.tokenizer, opened.max_length
    tokenizer_source, weights = backbone.resolve(config.model)
    tokenizer = backbone.load_tokenizer(tokenizer_source, config.model)
    task = tasks.prompt_continuation_task(tokenizer, config.model.max_length)
    if weights is None:
        raise UserError(f"{config.model.name_or_path} is a random test model; use run=<run folder> or a pretrained model")
    model = backbone.load_model(task.auto_class_name, weights, tokenizer, config.model, **task.head_kwargs())
    return task, model, tokenizer, config.model.max_length


def saved_run_config(run_dir: Path) -> TrainConfig:
    """The run's saved config as its prompts were built when it trained (an alpaca row format told by its rows)."""
    saved = load_run_config(run_dir, TrainConfig)
    if saved.task.data.format is None and _trained_row_format(run_dir) == "alpaca":
        saved.task.data.format = "alpaca"  # told by its rows' content when it trained: prompts are wrapped as they were
    return saved


def _trained_row_format(run_dir: Path) -> Optional[str]:
    """The row format (alpaca, sharegpt, openai) a run found in its data, from its manifest's plan; None if none."""
    import json

    try:
        described = json.loads(RunFolder(run_dir).manifest.read_text()).get("plan", {}).get("format") or ""
    except (OSError, ValueError):
        return None
    return described.split(" ", 1)[0] or None
