"""`llmft train`: config -> run parts -> the loop -> best checkpoint scored on test. Also resumes runs."""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from llmft.commands.calibrate import calibrate_best, check_supported
from llmft.commands.common import (
    continue_in,
    hydra_output_dir,
    load_run_config,
    quiet_libraries,
    save_resolved_config,
    to_typed,
    user_overrides,
)
from llmft.commands.cross_validate import cross_validate
from llmft.commands.setup import build_run
from llmft.commands.train_report import print_data_stats, print_splits
from llmft.commands.train_run import TrainRun, keep_samples, limited_batches, source_metrics
from llmft.config import FinetuneMethod, TrainConfig
from llmft.data import loading as data
from llmft.data import splits as carving
from llmft.engine import adversarial
from llmft.engine.distributed import teardown, world_from_env
from llmft.engine.evaluation import gathered_metrics
from llmft.engine.loop import Interrupted, NonFiniteLoss, Selection, StepParts, fit, stop_requests
from llmft.engine.privacy import save_spent
from llmft.errors import Stopped, UserError
from llmft.models import backbone
from llmft.models.backbone import is_random
from llmft.reporting.console import MetricsLog, console, plot_curves, print_metrics, print_plan
from llmft.reporting.trackers import build_sink
from llmft.runs import resume
from llmft.runs.checkpoint import drop_training_state, save_model
from llmft.runs.manifest import write_manifest
from llmft.runs.model_card import write_model_card
from llmft.runs.run_folder import RunFolder
from llmft.commands.setup import RunParts
from llmft.tasks.base import Task

PLAN_SUMMARY = (
    "device",
    "precision",
    "finetune",
    "train_examples",
    "transfer_rows",
    "optimizer_steps",
    "warmup_steps",
    "effective_batch_size",
    "micro_batch_size",
    "estimated_peak_gib",
    "trainable_parameters",
    "total_parameters",
    "format",
)


def train_command(cfg: DictConfig) -> float:
    """Hydra entry: validate the composed config, train (or resume) a run, return the selection metric. A single run
    that fails before it logged or saved anything leaves no folder (a sweep's failed jobs stay, listed in its summary)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    job_dir = RunFolder(hydra_output_dir())
    removable = job_dir.holds_only_hydra_files() and HydraConfig.get().mode == RunMode.RUN and _holds_run_folder()
    try:
        return _train_command(cfg)
    except (Exception, KeyboardInterrupt):  # not SystemExit: a stopped run exits through it, its checkpoint saved
        if removable:
            job_dir.remove_unstarted()
        raise


def _train_command(cfg: DictConfig) -> float:
    config = to_typed(cfg, TrainConfig)
    out_dir = hydra_output_dir()
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    resolved.pop("hydra", None)
    resume_from = None
    if config.trainer.resume:
        if config.trainer.resume == "auto" and int(os.environ.get("WORLD_SIZE", 1)) > 1:
            raise UserError("under torchrun, resume a named run: trainer.resume=<run folder>")
        run_dir = resume.find_run(config.trainer.resume, out_dir.parent.parent)
        if run_dir is None:
            print("trainer.resume=auto: no unfinished run to resume; starting a new one", file=sys.stderr)
        else:
            resume.check_overrides(user_overrides())
            saved = load_run_config(run_dir, TrainConfig)
            if _holds_run_folder():
                continue_in(run_dir)  # its log, and no folder of this job's own
            saved.trainer.progress, saved.trainer.device = config.trainer.progress, config.trainer.device
            config, out_dir, resume_from = saved, run_dir, RunFolder(run_dir).last
            resolved = OmegaConf.to_container(OmegaConf.load(RunFolder(run_dir).saved_config), resolve=True)  # type: ignore[assignment]

    run = RunFolder(out_dir)
    holder = _holds_run_folder()
    if holder:
        run.lock()
    try:
        if holder and resume_from is not None:
            resume.repair(run)
        if config.trainer.cv_folds:
            return cross_validate(config, out_dir, resolved, train)
        return train(config, out_dir, resolved, resume_from)
    except Stopped as ex:  # a signal before the loop began (the loop and the final scoring stop on their own)
        again = (
            f"the run is as it was; resume it with: llmft train trainer.resume={out_dir}" if resume_from else "nothing was saved"
        )
        raise Stopped(ex.signum, f"before training {'went on' if resume_from else 'began'}; {again}") from None
    finally:
        run.unlock()
        teardown()  # after train()'s frame, with the wrapped model, is gone


def _holds_run_folder() -> bool:
    """Under torchrun (or SLURM tasks, whose RANK is set later) rank 0 alone holds, repairs and cleans the run folder."""
    return world_from_env().main and int(os.environ.get("SLURM_PROCID", 0)) == 0


def train(
    config: TrainConfig, out_dir: Path, resolved: Optional[dict[str, Any]] = None, resume_from: Optional[Path] = None
) -> float:
    """Run one training job into `out_dir` (continuing from `resume_from` if given); returns the best eval
    value of the selection metric."""
    quiet_libraries()
    _check_adapter_only(config)
    if config.task.calibrate:
        check_supported(config)
    parts = build_run(config, _planned_micro_batch(out_dir) if resume_from is not None else None, out_dir)
    if config.trainer.dry_run:
        print_splits(parts, config)
        return _dry_run(parts, config)
    run = _setup(config, parts, out_dir, resolved, resume_from)
    state = _fit(run)
    return _finish(run, state)


def _planned_micro_batch(out_dir: Path) -> Optional[int]:
    """The rows per forward pass a run chose when it started (its manifest's plan), so its resume keeps them."""
    manifest = RunFolder(out_dir).manifest
    try:
        return json.loads(manifest.read_text()).get("plan", {}).get("micro_batch_size")
    except (OSError, ValueError, AttributeError):
        return None


def _check_adapter_only(config: TrainConfig) -> None:
    """An unmerged LoRA checkpoint holds only the adapter: useless on a random base."""
    if config.finetune.adapters and not config.finetune.merge:
        if is_random(config.model):
            raise UserError(
                f"finetune={config.finetune.method.value} with finetune.merge=false keeps only the adapter, which needs a "
                f"pretrained base; {config.model.name_or_path} is random"
            )


def _setup(
    config: TrainConfig, parts: RunParts, out_dir: Path, resolved: Optional[dict[str, Any]], resume_from: Optional[Path]
) -> Any:
    """The run folder (rank 0's, on every rank), resumed from its checkpoint or started with its manifest, and the
    metrics log."""
    dist = parts.dist
    out_dir = Path(dist.broadcast(str(out_dir)))  # under torchrun every rank writes (only) to rank 0's folder
    config.trainer.progress = config.trainer.progress and dist.main
    run = TrainRun(config, parts, out_dir, resolved)
    if resume_from is not None:
        run.state = _resume(run, resume_from)
    elif dist.main:
        _start(run)
    sink = None
    if dist.main:
        sink = build_sink(config.logger, out_dir, resolved or {})
    run.log = MetricsLog(RunFolder(out_dir).metrics if dist.main else None, sink)
    return run


def _resume(run: TrainRun, resume_from: Path) -> Any:
    """Load the checkpoint on every rank; rank 0 cuts the log back to it and notes the resume in the manifest."""
    dist = run.parts.dist
    if dist.main:
        resume.clean_partial_saves(run.checkpoints)
    dist.barrier()
    state = run.restore(resume_from)
    if dist.main:
        resume.truncate_metrics(RunFolder(run.out_dir).metrics, state.step)
        resume.note_resume(run.out_dir, state.step)
        console.print(f"[bold]llmft train[/] resumes {run.out_dir} at step {state.step} (epoch {state.epoch})")
    return state


def _start(run: TrainRun) -> None:
    """A new run folder (rank 0): the manifest, the held-out rows, and the plan on the console."""
    config, parts, out_dir = run.config, run.parts, run.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    config_record = run.resolved or OmegaConf.to_container(OmegaConf.structured(config))
    if RunFolder(out_dir).saved_config.is_file():  # Hydra wrote it unresolved: `${oc.env:X}` must not resolve at load
        save_resolved_config(config_record, RunFolder(out_dir).saved_config)
    write_manifest(RunFolder(out_dir).manifest, config_record, config.seed, data.fingerprint(parts.splits), {"plan": parts.plan})
    plan = ", ".join(f"{k}={v}" for k, v in parts.plan.items() if k in PLAN_SUMMARY)
    console.print(f"[bold]llmft train[/] -> {out_dir}  ({plan})")
    print_splits(parts, config)
    carving.write(out_dir, parts.carve)  # the held-out rows, for `llmft eval` to score the same ones
    print_data_stats(parts.plan["data"], parts.plan.get("sources", []))


def _fit(run: TrainRun) -> Any:
    """The loop, from where the run stands. A signal stops it after a step with a checkpoint saved: exit 128 + signal."""
    config, parts = run.config, run.parts
    selection = Selection(config.task.select_metric, config.task.selection_mode)
    loss_fn = adversarial.wrap(parts.loss_fn, config.finetune, parts.strategy.unwrap(parts.model))
    step_parts = StepParts(
        parts.model,
        loss_fn,
        parts.optimizer,
        parts.scheduler,
        parts.scaler,
        parts.precision,
        config.trainer,
        parts.dist,
        parts.strategy,
    )
    try:
        return fit(step_parts, parts.train_loader, selection, run.hooks(), parts.num_steps, run.state)
    except Interrupted as ex:
        stopped = (ex.signum, str(ex))  # leave the except block: its traceback would keep the wrapped model alive
    except NonFiniteLoss as ex:
        raise NonFiniteLoss(f"{ex}; {_what_is_kept(run)}") from None
    del step_parts  # it holds the wrapped model (see distributed.teardown)
    where = RunFolder(run.out_dir).last if config.trainer.save_last else "nowhere (trainer.save_last=false)"
    if parts.dist.main:
        print(
            f"error: {stopped[1]}; checkpoint saved to {where}. Resume with: llmft train trainer.resume={run.out_dir}",
            file=sys.stderr,
        )
    parts.model = None  # freed before the process group goes (see distributed.teardown)
    sys.exit(128 + stopped[0])


def _what_is_kept(run: TrainRun) -> str:
    """What a run that stops on an error keeps: its last resumable checkpoint, or nothing (its folder goes when it had
    logged nothing either)."""
    last = RunFolder(run.out_dir).last
    if RunFolder.loop_state(last).is_file():
        step = json.loads(RunFolder.loop_state(last).read_text())["step"]
        return f"the last good checkpoint (step {step}) is kept in {last}"
    return "no checkpoint was saved before it, so none is kept"


def _finish(run: TrainRun, state: Any) -> float:
    """Merge a LoRA adapter into checkpoints/best, score it on test, write the results; drop the training state. A
    signal during the scoring stops it, saying how to finish the run (everything it needs is saved)."""
    config, parts, dist = run.config, run.parts, run.parts.dist
    value = float("nan")
    with stop_requests("stopping the final test scoring (the trained checkpoints are saved)") as requested:
        if dist.main and config.finetune.method is FinetuneMethod.lora and config.finetune.merge:
            _merge_best_adapter(parts.strategy.unwrap(parts.model), parts.tokenizer, run.best_dir, parts.task)
        if config.task.calibrate:
            calibrate_best(config, run.best_dir, parts, dist)  # the test scores below use the fitted temperature
        test_metrics = _score_test(config, run.best_dir, parts, dist, requested)
        if test_metrics is None:
            _stopped_scoring(run, requested[0])
        if dist.main:  # a stop from here on waits for the results: the run finishes
            value = _write_results(config, run.out_dir, parts, state, test_metrics)
            drop_training_state(
                run.checkpoints, config.trainer.keep_last
            )  # finished: nothing resumes it; its state is 2x the weights
    run.log.close()
    dist.barrier()
    return dist.broadcast(value)


def _stopped_scoring(run: TrainRun, signum: int) -> None:
    """Exit 128 + signal after a stop during the final test scoring, with the command that finishes the run."""
    import signal

    saved = RunFolder(run.out_dir).last if run.config.trainer.save_last else None
    finish = f"llmft train trainer.resume={run.out_dir}" if saved is not None else f"llmft eval run={run.out_dir}"
    if run.parts.dist.main:
        print(
            f"error: stopped by {signal.Signals(signum).name} during the final test scoring; the training is done and "
            f"saved ({run.best_dir}{', ' + str(saved) if saved else ''}). Score it on test with: {finish}",
            file=sys.stderr,
        )
    run.log.close()
    sys.exit(128 + signum)


def _dry_run(parts: RunParts, config: TrainConfig) -> float:
    """Print the plan (parameters, batch, steps, data) and a memory estimate; train nothing."""
    plan = dict(parts.plan)
    plan["memory_note"] = (
        "estimated_peak_gib: weights, gradients, optimizer state and the activations measured on the "
        "longest training row (engine/memory.py)"
    )
    print_plan(plan)
    return float("nan")


def _merge_best_adapter(model: Any, tokenizer: Any, best_dir: Path, task: Task) -> None:
    """Fold the best adapter into the backbone and save a plain Hugging Face checkpoint in its place."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    if not (best_dir / "adapter_model.safetensors").is_file() and (best_dir / "model.safetensors").is_file():
        return  # merged already, by a finish that was stopped during its test scoring (the run resumed to finish)
    set_peft_model_state_dict(model, load_file(best_dir / "adapter_model.safetensors"))
    save_model(best_dir, model.merge_and_unload(), tokenizer, extra_files=task.checkpoint_files)


def _score_test(
    config: TrainConfig, best_dir: Path, parts: RunParts, dist: Any, requested: list[int]
) -> Optional[dict[str, Any]]:
    """Every rank scores its shard of the test split with the best checkpoint; rank 0 gets the gathered metrics. None
    when a stop was `requested` (a signal) before the scoring ended."""
    parts.model = parts.optimizer = parts.scheduler = None
    gc.collect()
    dist.barrier()  # the best checkpoint (merged, for LoRA) is on disk
    best_model = backbone.load_finetuned(parts.task.auto_class_name, best_dir).to(parts.precision.device)
    batches = limited_batches(parts.test_loader, config.trainer.limit_eval_batches, "test", config.trainer.progress)
    try:
        metrics = gathered_metrics(parts.task, best_model, _until_stopped(batches, requested), parts.precision, "test", dist)
        metrics.update(source_metrics(parts, best_model, "test", dist, config.trainer))
    except StopScoring:
        metrics = None
    del best_model
    gc.collect()  # multirun jobs share one process
    return None if requested else metrics


class StopScoring(Exception):
    """A stop was requested during the final test scoring."""


def _until_stopped(batches: Any, requested: list[int]) -> Any:
    for batch in batches:
        if requested:
            raise StopScoring()
        yield batch


def _write_results(config: TrainConfig, out_dir: Path, parts: RunParts, state: Any, test_metrics: dict[str, Any]) -> float:
    """Write eval.json (the best checkpoint's test metrics), the model card and loss.png; print the table."""
    best_dir = RunFolder(out_dir).best
    test_metrics = keep_samples(test_metrics, RunFolder(out_dir).samples("test"))
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
    if parts.private is not None:
        summary["privacy"] = save_spent(RunFolder(out_dir).manifest, parts.private, state.step)
    RunFolder(out_dir).eval_json.write_text(json.dumps(summary, indent=2) + "\n")

    write_model_card(best_dir, json.loads(RunFolder(out_dir).manifest.read_text()), summary, parts.task.pipeline_tag)
    records = [json.loads(line) for line in RunFolder(out_dir).metrics.read_text().splitlines() if line.strip()]
    plot_curves(records, config.task.select_metric, RunFolder(out_dir).loss_plot)
    print_metrics(f"test metrics of the best checkpoint (step {state.best_step}) — {out_dir}", test_metrics)
    return float(state.best_value) if state.best_value is not None else float("nan")
