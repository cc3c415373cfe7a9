"""One training run as `llmft train` drives it: its parts and folder, and what the loop calls out to (periodic eval, the
best checkpoint, the resumable state); the strategy decides what each rank gathers, rank 0 writes."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from llmft.config import TrainConfig
from llmft.data import streaming
from llmft.engine.evaluation import gathered_metrics
from llmft.engine.loop import Hooks, LoopState
from llmft.reporting.console import MetricsLog, scalar_metrics, track
from llmft.runs.checkpoint import read_training_state, restore_training_state, rng_state, save_model, save_training_state
from llmft.runs.run_folder import RunFolder
from llmft.commands.setup import RunParts


@dataclass
class TrainRun:
    """What the phases of `llmft train` share. The model is read from `parts` on each call, never kept, so clearing
    `parts.model` frees it (see distributed.teardown)."""

    config: TrainConfig
    parts: RunParts
    out_dir: Path
    resolved: Optional[dict[str, Any]] = None  # the composed config as run (for the manifest and trackers)
    state: Optional[LoopState] = None  # where a resumed run continues
    log: MetricsLog = field(default_factory=lambda: MetricsLog(None))

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.out_dir)

    @property
    def checkpoints(self) -> Path:
        return self.folder.checkpoints

    @property
    def best_dir(self) -> Path:
        return self.folder.best

    def hooks(self) -> Hooks:
        return Hooks(evaluate=self.evaluate, on_best=self.on_best, save_state=self.save_state, record=self.log.write)

    def evaluate(self) -> dict[str, Any]:
        """Score the eval split: the strategy's eval ranks split the batches and the partials are gathered, so the
        metrics equal a single process's; every rank returns rank 0's."""
        parts, trainer = self.parts, self.config.trainer
        batches = limited_batches(parts.eval_loader, trainer.limit_eval_batches, "eval", trainer.progress)
        metrics = gathered_metrics(
            parts.task, parts.strategy.unwrap(parts.model), batches, parts.precision, "eval", parts.strategy.eval_shard
        )
        metrics.update(source_metrics(parts, parts.strategy.unwrap(parts.model), "eval", parts.strategy.eval_shard, trainer))
        table = metrics.pop("samples_table", None)
        if parts.dist.main:
            keep_samples({"samples_table": table}, self.folder.samples("eval"))
        return parts.dist.broadcast(metrics)

    def on_best(self, step: int, metrics: dict[str, Any]) -> None:
        """Save the model as checkpoints/best (Hugging Face format)."""
        parts = self.parts
        weights = parts.strategy.full_weights(parts.model)  # may be a collective: every rank gathers
        if parts.dist.main:
            save_model(
                self.best_dir,
                parts.strategy.unwrap(parts.model),
                parts.tokenizer,
                state_dict=weights,
                extra_files=parts.task.checkpoint_files,
            )
        parts.dist.barrier()

    def save_state(self, loop_state: LoopState) -> None:
        """Save checkpoints/last with everything an exact resume needs (every rank's RNG streams too)."""
        trainer, parts = self.config.trainer, self.parts
        if not trainer.save_last:
            return
        dist, strategy = parts.dist, parts.strategy
        loop_state.data_position = streaming.data_position(parts.train_loader)  # a stream continues at its row and block
        rngs = dist.gather_tensors(rng_state()) if dist.enabled else None
        weights = strategy.full_weights(parts.model)  # collectives where the state is spread: every rank gathers
        optimizer_state = strategy.optimizer_state(parts.model, parts.optimizer)
        if dist.main:  # rank 0 writes
            save_training_state(
                self.checkpoints,
                strategy.unwrap(parts.model),
                parts.tokenizer,
                weights,
                optimizer_state,
                strategy.optimizer_format,
                parts.scheduler,
                parts.scaler,
                loop_state.to_dict(),
                trainer.keep_last,
                rngs,
                parts.task.checkpoint_files,
            )
        dist.barrier()

    def restore(self, folder: Path) -> LoopState:
        """Load a resumable checkpoint into the parts (weights, optimizer, schedule, scaler, this rank's RNG)."""
        parts = self.parts
        saved = read_training_state(folder)
        parts.strategy.load(parts.model, parts.optimizer, folder, saved)
        state = LoopState(**restore_training_state(saved, parts.scheduler, parts.scaler, parts.dist.rank))
        streaming.restore(parts.train_loader, state.data_position)
        return state


def source_metrics(parts: RunParts, model: Any, kind: str, shard: Any, trainer: Any) -> dict[str, Any]:
    """task.data.sources: the metrics of each source's own `kind` split (eval or test), keyed `<name>/<metric>`."""
    out: dict[str, Any] = {}
    for role, loader in parts.source_loaders.items():
        if role.split("/", 1)[0] != kind:
            continue
        batches = limited_batches(loader, trainer.limit_eval_batches, role, trainer.progress)
        metrics = gathered_metrics(parts.task, model, batches, parts.precision, role, shard)
        out.update({f"{role.split('/', 1)[1]}/{k}": v for k, v in scalar_metrics(metrics).items()})
    return out


def limited_batches(loader: Any, limit: int, role: str, progress: bool) -> Any:
    """The loader's batches (the first `limit` when > 0), with a progress bar."""
    count = min(len(loader), limit) if limit > 0 else len(loader)
    return track(itertools.islice(loader, limit) if limit > 0 else loader, count, role, progress)


def keep_samples(metrics: dict[str, Any], path: Path) -> dict[str, Any]:
    """Write the (input, reference, prediction) rows of a generation-based eval; keep the numbers."""
    table = metrics.pop("samples_table", None)
    if table:
        path.write_text("".join(json.dumps(row) + "\n" for row in table), encoding="utf-8")
    return metrics
