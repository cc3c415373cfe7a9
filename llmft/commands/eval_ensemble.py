"""`llmft eval run=[a,b,c]`: score an ensemble of runs on one split: each member's metrics and the ensemble's (the
members' class probabilities, or regression scores, averaged row by row), side by side. Members must share their
family and labels (one line otherwise)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from llmft.commands.common import checkpoint_dir, hydra_output_dir, load_run_config, quiet_libraries
from llmft.config import EvalConfig, TrainConfig
from llmft.data import loading as data
from llmft.data import scored_rows
from llmft.engine.precision import resolve_device, resolve_precision
from llmft.runs.run_folder import RunFolder
from llmft.tasks import ensemble, get_task
from llmft.tasks.open_checkpoint import open_checkpoint
from llmft.tasks.base import Task


def eval_ensemble(config: EvalConfig, task_config: Any) -> float:
    """Each member scores the split (rows in file order); the family averages their partials; write eval.json."""
    quiet_libraries()
    runs = [Path(r) for r in config.run]
    saved = [load_run_config(r, TrainConfig) for r in runs]
    folders = [checkpoint_dir(r, config.checkpoint) for r in runs]
    ensemble.check_ensembled(get_task(task_config(saved[0].task)))
    opened = [open_checkpoint(copy.deepcopy(task_config(s.task)), f, s.model.max_length) for s, f in zip(saved, folders)]
    tasks, models = [o.task for o in opened], [o.model for o in opened]
    ensemble.check_members(runs, [str(x.task.family) for x in saved], models)
    device = resolve_device(config.trainer.device)
    precision = resolve_precision(config.precision.mode, device)
    partials, member_metrics = [], {}
    for run, s, task, model in zip(runs, saved, tasks, models):
        part = _member_partials(config, run, s, task, model.to(device), precision)
        partials.append(part)
        member_metrics[str(run)] = task.eval_metrics(part, "test")
    metrics = tasks[0].eval_metrics(tasks[0].ensemble_partials(partials), "test")
    out = hydra_output_dir()
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "runs": [str(r) for r in runs],
        "checkpoint": config.checkpoint,
        "split": config.split,
        "members": member_metrics,
        "ensemble": metrics,
        "metrics": metrics,
    }
    RunFolder(out).eval_json.write_text(json.dumps(result, indent=2) + "\n")
    print_side_by_side(
        f"{config.split} metrics of a {len(runs)}-member ensemble (written to {RunFolder(out).eval_json})",
        member_metrics,
        metrics,
    )
    return float(metrics.get(tasks[0].cfg.select_metric, float("nan")))


def _member_partials(
    config: EvalConfig, run: Path, saved: TrainConfig, task: Task, model: Any, precision: Any
) -> list[dict[str, Any]]:
    role = scored_rows.role(config.split, task.cfg.data)
    dataset, _ = scored_rows.scored_rows(run, task.cfg.data, saved.task.data, role)
    features = task.prepare({role: dataset})
    loader = data.make_loader(
        features[role], config.trainer.eval_batch_size, task.collator(task.tokenizer), False, config.seed, by_length=False
    )  # file order: the members' rows line up
    return [task.eval_partial(model, loader, precision, role)]


def print_side_by_side(title: str, members: dict[str, dict[str, Any]], ensemble: dict[str, Any]) -> None:
    """Each scalar metric: every member's value and the ensemble's."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    for i in range(len(members)):
        table.add_column(f"member {i + 1}")
    table.add_column("ensemble")
    for key, value in ensemble.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and "/" not in key:
            table.add_row(key, *(_fmt(m.get(key)) for m in members.values()), _fmt(value))
    console = Console()
    console.print(table)
    for i, run in enumerate(members, 1):
        console.print(f"member {i}: {run}", highlight=False, soft_wrap=True)


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)
