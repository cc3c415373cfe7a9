"""`llmft train`: config -> run parts -> the loop -> best checkpoint scored on test. Also resumes runs."""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from llmft.commands.common import hydra_output_dir, load_run_config, quiet_libraries, to_typed, user_overrides
from llmft.config import FinetuneMethod, Strategy, TrainConfig


PLAN_SUMMARY = ("device", "precision", "finetune", "train_examples", "optimizer_steps", "warmup_steps", "effective_batch_size",
                "trainable_parameters", "total_parameters", "format")


def train_command(cfg: DictConfig) -> float:
    """Hydra entry: validate the composed config, train (or resume) a run, return the selection metric. A single run
    that fails before it logged or saved anything leaves no folder (a sweep's failed jobs stay, listed in its summary)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from llmft.runs.run_folder import RunFolder

    job_dir = RunFolder(hydra_output_dir())
    removable = job_dir.holds_only_hydra_files() and HydraConfig.get().mode == RunMode.RUN and _holds_run_folder()
    try:
        return _train_command(cfg)
    except (Exception, KeyboardInterrupt):  # not SystemExit: a stopped run exits through it, its checkpoint saved
        if removable:
            job_dir.remove_unstarted()
        raise


def _train_command(cfg: DictConfig) -> float:
    from llmft.runs import resume

    config = to_typed(cfg, TrainConfig)
    out_dir = hydra_output_dir()
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    resolved.pop("hydra", None)
    resume_from = None
    if config.trainer.resume:
        if config.trainer.resume == "auto" and int(os.environ.get("WORLD_SIZE", 1)) > 1:
            from llmft.errors import UserError

            raise UserError("under torchrun, resume a named run: trainer.resume=<run folder>")
        run_dir = resume.find_run(config.trainer.resume, out_dir.parent.parent)
        if run_dir is None:
            print("trainer.resume=auto: no unfinished run to resume; starting a new one", file=sys.stderr)
        else:
            resume.check_overrides(user_overrides())
            saved = load_run_config(run_dir, TrainConfig)
            saved.trainer.progress, saved.trainer.device = config.trainer.progress, config.trainer.device
            config, out_dir, resume_from = saved, run_dir, run_dir / "checkpoints" / "last"
            resolved = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"), resolve=True)  # type: ignore[assignment]
    from llmft.engine.distributed import teardown
    from llmft.runs.run_folder import RunFolder

    run = RunFolder(out_dir)
    holder = _holds_run_folder()
    if holder:
        run.lock()
    try:
        if holder and resume_from is not None:
            resume.repair(run)
        return train(config, out_dir, resolved, resume_from)
    finally:
        run.unlock()
        teardown()  # after train()'s frame, with the wrapped model, is gone


def _holds_run_folder() -> bool:
    """Under torchrun (or SLURM tasks, whose RANK is set later) rank 0 alone holds, repairs and cleans the run folder."""
    from llmft.engine.distributed import world_from_env

    return world_from_env().main and int(os.environ.get("SLURM_PROCID", 0)) == 0


def train(config: TrainConfig, out_dir: Path, resolved: Optional[dict[str, Any]] = None, resume_from: Optional[Path] = None) -> float:
    """Run one training job into `out_dir` (continuing from `resume_from` if given); returns the best eval
    value of the selection metric."""
    from llmft.runs import resume
    from llmft.commands.setup import build_run
    from llmft.runs.checkpoint import drop_training_state, restore_training_state, rng_state, save_model, save_training_state
    from llmft.engine import distributed
    from llmft import tasks
    from llmft.data import splits as carving
    from llmft.engine.distributed import unwrap
    from llmft.engine.loop import Hooks, Interrupted, LoopState, Selection, StepParts, fit
    from llmft.runs.manifest import write_manifest
    from llmft.reporting.console import MetricsLog, console, track

    quiet_libraries()
    if config.finetune.method is FinetuneMethod.lora and not config.finetune.merge:
        from llmft.models.backbone import is_random

        if is_random(config.model):
            from llmft.errors import UserError

            raise UserError(f"finetune.merge=false keeps only the adapter, which needs a pretrained base; {config.model.name_or_path} is random")
    parts = build_run(config)
    if config.trainer.dry_run:
        _print_splits(parts, config)
        return _dry_run(parts, config)
    dist = parts.dist
    out_dir = Path(dist.broadcast(str(out_dir)))  # under torchrun every rank writes (only) to rank 0's folder
    trainer = config.trainer
    trainer.progress = trainer.progress and dist.main
    fsdp = dist.enabled and trainer.strategy is Strategy.fsdp
    checkpoints = out_dir / "checkpoints"
    best_dir = checkpoints / "best"
    state = None
    if resume_from is not None:
        if dist.main:
            resume.clean_partial_saves(checkpoints)
        dist.barrier()
        state = LoopState(**restore_training_state(resume_from, unwrap(parts.model), parts.optimizer, parts.scheduler, parts.scaler,
                                                   dist.rank, sharded=fsdp))
        if dist.main:
            resume.truncate_metrics(out_dir / "metrics.jsonl", state.step)
            resume.note_resume(out_dir, state.step)
            console.print(f"[bold]llmft train[/] resumes {out_dir} at step {state.step} (epoch {state.epoch})")
    elif dist.main:
        from llmft.data import loading as data

        out_dir.mkdir(parents=True, exist_ok=True)
        config_record = resolved or OmegaConf.to_container(OmegaConf.structured(config))
        write_manifest(out_dir / "run.json", config_record, config.seed, data.fingerprint(parts.splits), {"plan": parts.plan})
        plan = ", ".join(f"{k}={v}" for k, v in parts.plan.items() if k in PLAN_SUMMARY)
        console.print(f"[bold]llmft train[/] -> {out_dir}  ({plan})")
        _print_splits(parts, config)
        carving.write(out_dir, parts.carve)  # the held-out rows, for `llmft eval` to score the same ones
        _print_data_stats(parts.plan["data"])

    limit = trainer.limit_eval_batches
    model, task = parts.model, parts.task


    def evaluate() -> dict[str, Any]:
        """Each rank scores its shard of the eval split and the partials are gathered, so the metrics equal a single
        process's. Under FSDP every rank runs the same batches (a sharded model needs all ranks for each forward)."""
        batches = track(_limited(parts.eval_loader, limit), _count(parts.eval_loader, limit), "eval", trainer.progress)
        if fsdp:
            metrics = tasks.evaluate(task, unwrap(model), batches, parts.precision, role="eval")
        else:
            partials = dist.gather(task.eval_partial(unwrap(model), batches, parts.precision, "eval", dist))  # every rank
            metrics = task.eval_metrics(partials, "eval") if dist.main else {}
        table = metrics.pop("samples_table", None)
        if dist.main:
            _keep_samples({"samples_table": table}, out_dir / "generations-eval.jsonl")
        return dist.broadcast(metrics)

    def on_best(step: int, metrics: dict[str, Any]) -> None:
        weights = distributed.full_state_dict(model) if fsdp else None  # a collective: every rank gathers
        if dist.main:
            save_model(best_dir, unwrap(model), parts.tokenizer, state_dict=weights)
        dist.barrier()

    def save_state(loop_state: LoopState) -> None:
        if not trainer.save_last:
            return
        rngs = dist.gather_tensors(rng_state()) if dist.enabled else None
        sharded = (distributed.full_state_dict(model), distributed.full_optimizer_state(model, parts.optimizer)) if fsdp else None
        if dist.main:  # collectives above: every rank gathers; rank 0 writes
            save_training_state(checkpoints, unwrap(model), parts.tokenizer, parts.optimizer, parts.scheduler, parts.scaler,
                                loop_state.to_dict(), trainer.keep_last, rngs, sharded)
        dist.barrier()

    sink = None
    if dist.main:
        from llmft.reporting.trackers import build_sink

        sink = build_sink(config.logger, out_dir, resolved or {})
    hooks = Hooks(evaluate=evaluate, on_best=on_best, save_state=save_state,
                  log=MetricsLog(out_dir / "metrics.jsonl" if dist.main else None, sink))
    selection = Selection(config.task.select_metric, config.task.selection_mode)
    stopped: Optional[tuple[int, str]] = None
    step_parts = StepParts(model, task, parts.optimizer, parts.scheduler, parts.scaler, parts.precision, trainer, dist)
    try:
        state = fit(step_parts, parts.train_loader, selection, hooks, parts.num_steps, state)
    except Interrupted as ex:
        stopped = (ex.signum, str(ex))  # leave the except block: its traceback would keep the wrapped model alive
    del step_parts  # it holds the wrapped model (see distributed.teardown)
    if stopped is not None:
        where = checkpoints / "last" if trainer.save_last else "nowhere (trainer.save_last=false)"
        if dist.main:
            print(f"error: {stopped[1]}; checkpoint saved to {where}. Resume with: llmft train trainer.resume={out_dir}",
                  file=sys.stderr)
        del model  # freed before the process group goes (see distributed.teardown)
        parts.model = None
        sys.exit(128 + stopped[0])
    value = float("nan")
    if dist.main and config.finetune.method is FinetuneMethod.lora and config.finetune.merge:
        _merge_best_adapter(unwrap(model), parts.tokenizer, best_dir)
    del model
    test_metrics = _score_test(config, best_dir, parts, dist)
    if dist.main:
        value = _finish(config, out_dir, parts, state, test_metrics)
        drop_training_state(checkpoints, trainer.keep_last)  # finished: nothing resumes it; its state is 2x the weights
    hooks.log.close()
    dist.barrier()
    return dist.broadcast(value)


def _dry_run(parts: Any, config: TrainConfig) -> float:
    """Print the plan (parameters, batch, steps, data) and a memory estimate; train nothing."""
    from llmft.reporting.console import print_plan

    plan = dict(parts.plan)
    trainable = plan["trainable_parameters"]
    optimizer_slots = {"sgd": 1 if config.optimizer.momentum else 0, "adam": 2, "adamw": 2}[config.optimizer.name.value]
    bytes_needed = 4 * (plan["total_parameters"] + trainable * (1 + optimizer_slots))  # fp32 weights, grads, optimizer state
    plan["estimated_memory_gib"] = round(bytes_needed / 2**30, 3)
    plan["memory_note"] = "weights + gradients + optimizer state in fp32; activations come on top"
    print_plan(plan)
    return float("nan")


def _merge_best_adapter(model: Any, tokenizer: Any, best_dir: Path) -> None:
    """Fold the best adapter into the backbone and save a plain Hugging Face checkpoint in its place."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from llmft.runs.checkpoint import save_model

    set_peft_model_state_dict(model, load_file(best_dir / "adapter_model.safetensors"))
    save_model(best_dir, model.merge_and_unload(), tokenizer)


def _score_test(config: TrainConfig, best_dir: Path, parts: Any, dist: Any) -> dict[str, Any]:
    """Every rank scores its shard of the test split with the best checkpoint; rank 0 gets the gathered metrics."""
    from llmft.models import backbone
    from llmft.reporting.console import track

    limit = config.trainer.limit_eval_batches
    parts.model = parts.optimizer = parts.scheduler = None
    gc.collect()
    dist.barrier()  # the best checkpoint (merged, for LoRA) is on disk
    best_model = backbone.load_finetuned(parts.task.auto_class_name, best_dir).to(parts.precision.device)
    batches = track(_limited(parts.test_loader, limit), _count(parts.test_loader, limit), "test", config.trainer.progress)
    partials = dist.gather(parts.task.eval_partial(best_model, batches, parts.precision, "test", dist))
    del best_model
    gc.collect()  # multirun jobs share one process
    return parts.task.eval_metrics(partials, "test") if dist.main else {}


def _finish(config: TrainConfig, out_dir: Path, parts: Any, state: Any, test_metrics: dict[str, Any]) -> float:
    """Write eval.json (the best checkpoint's test metrics), the model card and loss.png; print the table."""
    from llmft.reporting.console import plot_curves, print_metrics

    best_dir = out_dir / "checkpoints" / "best"
    test_metrics = _keep_samples(test_metrics, out_dir / "generations-test.jsonl")
    summary = {
        "split": "test",
        "checkpoint": str(best_dir),
        "best_step": state.best_step,
        "steps": state.step,
        "stopped_early": state.stopped_early,
        "skipped_steps": state.skipped_steps,
        "select_metric": config.task.select_metric,
        "select_mode": config.task.selection_mode.value,
        "select_value": state.best_value,
        "test_value": test_metrics.get(config.task.select_metric),
        "metrics": test_metrics,
    }
    (out_dir / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    from llmft.runs.model_card import write_model_card

    write_model_card(best_dir, json.loads((out_dir / "run.json").read_text()), summary, parts.task.pipeline_tag)
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    plot_curves(records, config.task.select_metric, out_dir / "loss.png")
    print_metrics(f"test metrics of the best checkpoint (step {state.best_step}) — {out_dir}", test_metrics)
    return float(state.best_value) if state.best_value is not None else float("nan")


def _keep_samples(metrics: dict[str, Any], path: Path) -> dict[str, Any]:
    """Write the (input, reference, prediction) rows of a generation-based eval; keep the numbers."""
    table = metrics.pop("samples_table", None)
    if table:
        path.write_text("".join(json.dumps(row) + "\n" for row in table), encoding="utf-8")
    return metrics


def _print_splits(parts: Any, config: TrainConfig) -> None:
    """One line with the rows each split got; a warning per carved split too small to measure anything."""
    from llmft.data import splits as carving
    from llmft.reporting.console import console

    line, warnings = carving.describe(parts.splits, config.task.data)
    console.print(line, highlight=False)
    for warning in warnings:
        print(warning, file=sys.stderr)


def _print_data_stats(stats: dict[str, dict[str, int]]) -> None:
    from llmft.reporting.console import console

    for role, counts in stats.items():
        if "blocks" in counts:  # raw text cut into blocks: what the run trains on, in tokens
            empty = f"; {counts['dropped_empty']} empty documents dropped" if counts["dropped_empty"] else ""
            console.print(f"  {role}: {counts['documents']:,} documents, {counts['tokens']:,} tokens -> "
                          f"{counts['blocks']:,} blocks of {counts['block_length']}{empty}")
            continue
        notes = {k: v for k, v in counts.items() if k in ("dropped_empty", "truncated", "dropped_unsupervised", "unanswerable") and v}
        if notes:
            console.print(f"  {role}: {counts.get('rows')} rows; " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in notes.items()))


def _count(loader: Any, limit: int) -> int:
    return min(len(loader), limit) if limit > 0 else len(loader)


def _limited(loader: Any, limit: int) -> Any:
    import itertools

    return itertools.islice(loader, limit) if limit > 0 else loader
