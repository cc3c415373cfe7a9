"""`llmft eval run=<folder>`: score a run's checkpoint on a split of its data, or of other data given by overrides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from llmft.commands.common import (
    apply_user_overrides,
    checkpoint_dir,
    hydra_output_dir,
    load_run_config,
    quiet_libraries,
    to_typed,
    user_overrides,
)
from llmft.commands.eval_ensemble import eval_ensemble
from llmft.commands.setup import build_initial_model
from llmft.config import EvalConfig, TaskConfig, TrainConfig
from llmft.data import loading as data
from llmft.data import scored_rows
from llmft.engine.distributed import Dist
from llmft.engine.evaluation import gathered_metrics
from llmft.engine.precision import resolve_device, resolve_precision
from llmft.errors import UserError
from llmft.evaluation.attacks import attack_dataset
from llmft.models import backbone
from llmft.reporting.console import console, print_metrics, scalar_metrics
from llmft.runs.run_folder import RunFolder
from llmft.tasks.base import ScoresAgainstReference, Task
from llmft.tasks.open_checkpoint import open_checkpoint


def _task_with_overrides(saved: TaskConfig, config: EvalConfig, cfg: DictConfig) -> TaskConfig:
    """The run's task config, with the user's `task=...` / `task.x.y=...` overrides applied on top."""
    if any(o.lstrip("+~").split("=", 1)[0] == "task" for o in user_overrides()):
        return config.task  # a whole new task group replaces the run's
    return apply_user_overrides(saved, cfg, "task")


def _without_model(cfg: DictConfig) -> DictConfig:
    """The config less its `model` node, which is there only because a `task=...` option may name its default model
    (task=sft); eval loads the run's own checkpoint, so a `model=` typed by the user is refused."""
    if any(o.lstrip("+~").split("=", 1)[0].split(".")[0] == "model" for o in user_overrides()):
        raise UserError(
            "llmft eval scores the run's own checkpoint: drop model=... (checkpoint=<folder> picks another checkpoint)"
        )
    from omegaconf import OmegaConf

    return OmegaConf.masked_copy(cfg, [k for k in cfg if k != "model"])  # type: ignore[return-value]


def eval_command(cfg: DictConfig) -> float:
    cfg = _without_model(cfg)
    config = to_typed(cfg, EvalConfig)
    if isinstance(config.run, list):  # run=[a,b,c]: an ensemble
        if config.attack is not None:
            raise UserError("attack= scores one run: give run=<run folder>, not an ensemble")

        return eval_ensemble(config, lambda saved_task: _task_with_overrides(saved_task, config, cfg))
    run_dir = Path(config.run)
    saved = load_run_config(run_dir, TrainConfig)
    task_cfg = _task_with_overrides(saved.task, config, cfg)
    scored, metrics = evaluate_run(config, run_dir, task_cfg, saved)
    out = hydra_output_dir()
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "run": str(run_dir),
        "checkpoint": config.checkpoint,
        "split": config.split,
        "data": task_cfg.data.path,
        **scored,
        "metrics": metrics,
    }
    RunFolder(out).eval_json.write_text(json.dumps(result, indent=2) + "\n")

    print_metrics(
        f"{config.split} metrics of {config.checkpoint} checkpoint — {run_dir} (written to {RunFolder(out).eval_json})", metrics
    )
    return float(metrics.get(task_cfg.select_metric, float("nan")))


def evaluate_run(
    config: EvalConfig, run_dir: Path, task_cfg: TaskConfig, saved: TrainConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load the checkpoint and its tokenizer, prepare the chosen split with the checkpoint's labels, score it: returns
    (how many rows and where from, metrics). With attack=..., the split is scored again perturbed, under `attack`."""
    quiet_libraries()
    opened = open_checkpoint(task_cfg, checkpoint_dir(run_dir, config.checkpoint), saved.model.max_length)
    task, model = opened.task, opened.model
    role = scored_rows.role(config.split, task_cfg.data)
    dataset, origin = scored_rows.scored_rows(run_dir, task_cfg.data, saved.task.data, role)

    console.print(
        f"llmft eval scores the {config.split} split: {len(dataset)} row{'s' * (len(dataset) != 1)} ({origin})", highlight=False
    )
    rows, metrics = _score(config, task, model, dataset, role, saved)
    scored: dict[str, Any] = {"rows": rows, "origin": origin}
    if config.attack is not None:
        scored["attack"] = _score_attacked(config, task, model, dataset, role, saved, metrics)
    return scored, metrics


def _score(config: EvalConfig, task: Task, model: Any, dataset: Any, role: str, saved: TrainConfig) -> tuple[int, dict[str, Any]]:
    """(rows scored, metrics) of the model on `dataset`, cut at the run's model.max_length (the task is bound to it)."""
    features = task.prepare({role: dataset})
    device = resolve_device(config.trainer.device)
    precision = resolve_precision(config.precision.mode, device)
    _rebuild_reference(task, saved, device)
    loader = data.make_loader(
        features[role],
        config.trainer.eval_batch_size,
        task.collator(task.tokenizer),
        False,
        config.seed,
        by_length=task.eval_order_free,
    )
    if config.trainer.limit_eval_batches > 0:
        import itertools

        loader = itertools.islice(loader, config.trainer.limit_eval_batches)
    metrics = gathered_metrics(task, model.to(device), loader, precision, role, Dist())  # the evaluation training uses
    metrics.pop("samples_table", None)
    return len(features[role]), metrics


def _score_attacked(
    config: EvalConfig, task: Task, model: Any, dataset: Any, role: str, saved: TrainConfig, clean: dict[str, Any]
) -> dict[str, Any]:
    """Score the split with its texts perturbed by `config.attack`; print clean -> attacked for each scalar metric."""
    from dataclasses import asdict

    attack = config.attack
    assert attack is not None
    attacked, changed = attack_dataset(dataset, list(task.cfg.data.text_columns), attack)
    _, metrics = _score(config, task, model, attacked, role, saved)
    console.print(
        f"attack={attack.kind.value} rate={attack.rate} seed={attack.seed}: {changed} of {len(dataset)} rows changed",
        highlight=False,
    )
    for name, value in scalar_metrics(metrics).items():
        if name in clean and isinstance(value, float) and "/" not in name:  # per-class rows stay in eval.json
            console.print(f"  {name}: clean {clean[name]:.4f} -> attacked {value:.4f}", highlight=False)
    return {**asdict(attack), "kind": attack.kind.value, "rows_changed": changed, "metrics": metrics}


def _rebuild_reference(task: Task, saved: TrainConfig, device: Any) -> None:
    """A family that scores against a reference (dpo, kto) gets the run's initial model, built as training built it
    (backbone, head, fine-tuning method: under LoRA the base with a fresh, zero adapter), to score the prepared rows
    once; the model is then freed."""
    if not isinstance(task, ScoresAgainstReference) or not task.needs_reference():
        return
    import transformers

    transformers.set_seed(saved.seed)  # as training seeded before it built the model (a random backbone's weights)
    weights = backbone.resolve(saved.model)[1]
    initial = build_initial_model(saved, task, weights, task.tokenizer, device)
    task.bind_reference(initial)
    del initial
