"""`llmft train`: config -> tokenizer, data, model, optimizer -> the loop -> best checkpoint scored on test."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from llmft.commands.common import hydra_output_dir, quiet_libraries, to_typed
from llmft.config import TrainConfig


def train_command(cfg: DictConfig) -> float:
    """Hydra entry: validate the composed config, train in the job's folder, return the selection metric."""
    config = to_typed(cfg, TrainConfig)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    resolved.pop("hydra", None)
    return train(config, hydra_output_dir(), resolved)


def train(config: TrainConfig, out_dir: Path, resolved: dict[str, Any] | None = None) -> float:
    """Run one training job into `out_dir`; returns the best eval value of the selection metric."""
    import transformers

    from llmft import backbone, data
    from llmft.checkpoint import save_model, save_training_state
    from llmft.loop import Selection, fit, total_steps
    from llmft.manifest import write_manifest
    from llmft.optim import build_optimizer, build_scheduler, warmup_steps
    from llmft.precision import resolve_device, resolve_precision
    from llmft.report import MetricsLog, console, plot_curves, print_metrics, track
    from llmft.tasks import get_task

    quiet_libraries()
    transformers.set_seed(config.seed)  # python, numpy, torch (and CUDA) RNGs
    trainer = config.trainer
    device = resolve_device(trainer.device)
    precision = resolve_precision(config.precision.mode, device)
    task = get_task(config.task)

    tokenizer_source, weights = backbone.resolve(config.model)
    tokenizer = backbone.load_tokenizer(tokenizer_source, config.model)
    splits = data.named_splits(data.load_raw(config.task.data), config.task.data)
    features = task.prepare(splits, tokenizer, config.model.max_length)
    model = task.build_model(weights, tokenizer, config.model).to(device)

    collate = task.collator(tokenizer)
    train_loader = data.make_loader(features["train"], trainer.batch_size, collate, True, config.seed, trainer.num_workers)
    eval_loader = data.make_loader(features["eval"], trainer.eval_batch_size, collate, False, config.seed, trainer.num_workers)
    test_loader = data.make_loader(features["test"], trainer.eval_batch_size, collate, False, config.seed, trainer.num_workers)
    num_steps = total_steps(len(train_loader), trainer)
    optimizer = build_optimizer(config.optimizer, model)
    scheduler = build_scheduler(config.scheduler, optimizer, num_steps)

    out_dir.mkdir(parents=True, exist_ok=True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    plan = {
        "device": str(device),
        "precision": precision.mode.value,
        "train_examples": len(features["train"]),
        "optimizer_steps": num_steps,
        "warmup_steps": warmup_steps(config.scheduler, num_steps),
        "effective_batch_size": trainer.batch_size * trainer.grad_accum_steps,
        "trainable_parameters": trainable,
        "labels": task.label_names,
    }
    write_manifest(out_dir / "run.json", resolved or OmegaConf.to_container(OmegaConf.structured(config)), config.seed, data.fingerprint(splits), {"plan": plan})
    console.print(f"[bold]llmft train[/] -> {out_dir}  ({', '.join(f'{k}={v}' for k, v in plan.items() if k != 'labels')})")

    best_dir = out_dir / "checkpoints" / "best"
    limit = trainer.limit_eval_batches

    def evaluate() -> dict[str, Any]:
        batches = track(_limited(eval_loader, limit), _count(eval_loader, limit), "eval", trainer.progress)
        return task.evaluate(model, batches, precision)

    def on_best(step: int, metrics: dict[str, Any]) -> None:
        save_model(best_dir, model, tokenizer)

    log = MetricsLog(out_dir / "metrics.jsonl")
    selection = Selection(config.task.select_metric, config.task.select_mode)
    result = fit(model, task, train_loader, optimizer, scheduler, precision, trainer, evaluate, selection, on_best, log, num_steps)
    if trainer.save_last:
        progress = {"step": result.steps, "best_value": result.best_value, "best_step": result.best_step}
        save_training_state(out_dir / "checkpoints" / "last", model, tokenizer, optimizer, scheduler, precision.grad_scaler(), progress)

    del model, optimizer, scheduler
    best_model = backbone.load_finetuned(task.auto_class_name, best_dir).to(device)
    batches = track(_limited(test_loader, limit), _count(test_loader, limit), "test", trainer.progress)
    test_metrics = task.evaluate(best_model, batches, precision)
    summary = {
        "split": "test",
        "checkpoint": str(best_dir),
        "best_step": result.best_step,
        "steps": result.steps,
        "stopped_early": result.stopped_early,
        "select_metric": config.task.select_metric,
        "select_mode": config.task.select_mode.value,
        "select_value": result.best_value,
        "test_value": test_metrics.get(config.task.select_metric),
        "metrics": test_metrics,
    }
    (out_dir / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_curves(log.records, config.task.select_metric, out_dir / "loss.png")
    print_metrics(f"test metrics of the best checkpoint (step {result.best_step}) — {out_dir}", test_metrics)
    del best_model
    gc.collect()  # multirun jobs share one process
    return float(result.best_value) if result.best_value is not None else float("nan")


def _count(loader: Any, limit: int) -> int:
    return min(len(loader), limit) if limit > 0 else len(loader)


def _limited(loader: Any, limit: int) -> Any:
    import itertools

    return itertools.islice(loader, limit) if limit > 0 else loader
