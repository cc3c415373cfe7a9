"""The one training loop: autocast, GradScaler, accumulation, clipping, periodic eval, best-checkpoint, early stop.

It knows nothing about tasks: it sees batches, a summed loss with its item count, and an evaluator.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional, Protocol

import torch

from llmft.config import MetricMode, TrainerConfig
from llmft.errors import UserError
from llmft.precision import Precision
from llmft.report import MetricsLog, progress_bar, scalar_metrics

Batch = dict[str, torch.Tensor]


class LossFn(Protocol):
    def count(self, batch: Batch) -> int: ...
    def loss_sum(self, model: Any, batch: Batch) -> torch.Tensor: ...


@dataclass
class Selection:
    metric: str
    mode: MetricMode

    def better(self, value: float, best: Optional[float]) -> bool:
        if best is None:
            return True
        return value > best if self.mode is MetricMode.max else value < best


@dataclass
class FitResult:
    steps: int
    best_value: Optional[float]
    best_step: int
    stopped_early: bool


def steps_per_epoch(num_batches: int, cfg: TrainerConfig) -> int:
    if cfg.limit_train_batches > 0:
        num_batches = min(num_batches, cfg.limit_train_batches)
    return math.ceil(num_batches / cfg.grad_accum_steps)


def total_steps(num_batches: int, cfg: TrainerConfig) -> int:
    """Optimizer steps the run will take (what the scheduler plans for)."""
    planned = steps_per_epoch(num_batches, cfg) * cfg.epochs
    return min(planned, cfg.max_steps) if cfg.max_steps > 0 else planned


def _groups(loader: Iterable[Batch], cfg: TrainerConfig) -> Iterator[list[Batch]]:
    """Micro-batches of one epoch, grouped by optimizer step."""
    batches = iter(loader)
    if cfg.limit_train_batches > 0:
        batches = itertools.islice(batches, cfg.limit_train_batches)
    while group := list(itertools.islice(batches, cfg.grad_accum_steps)):
        yield group


def fit(
    model: Any,
    loss_fn: LossFn,
    train_loader: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    precision: Precision,
    cfg: TrainerConfig,
    evaluate: Callable[[], dict[str, Any]],
    selection: Selection,
    on_best: Callable[[int, dict[str, Any]], None],
    log: MetricsLog,
    num_steps: int,
) -> FitResult:
    """Train for `num_steps` optimizer steps (or until early stopping) and return where the best eval was."""
    device = precision.device
    scaler = precision.grad_scaler()
    model.train()
    step, best, best_step, stale, stopped = 0, None, 0, 0, False
    window_loss = torch.zeros((), device=device)
    window_steps, window_items, window_start = 0, 0, time.perf_counter()

    def run_eval(epoch: int) -> bool:
        """Evaluate, log, keep the best; True when early stopping says stop."""
        nonlocal best, best_step, stale
        metrics = evaluate()
        if selection.metric not in metrics:
            raise UserError(f"select_metric '{selection.metric}' is not an eval metric; have: {', '.join(scalar_metrics(metrics))}")
        log.write({"step": step, "epoch": epoch, **{f"eval/{k}": v for k, v in scalar_metrics(metrics).items()}})
        value = float(metrics[selection.metric])
        if selection.better(value, best):
            best, best_step, stale = value, step, 0
            on_best(step, metrics)
        else:
            stale += 1
        return cfg.early_stopping_patience > 0 and stale >= cfg.early_stopping_patience

    with progress_bar(cfg.progress) as bar:
        task_id = bar.add_task("train", total=num_steps, info="") if bar else None
        for epoch in range(cfg.epochs):
            evaluated_at = -1
            for group in _groups(train_loader, cfg):
                items = sum(loss_fn.count(b) for b in group)  # normalise by the whole group, not per micro-batch
                if items == 0:
                    continue
                for batch in group:
                    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                    with precision.autocast():
                        loss = loss_fn.loss_sum(model, batch) / items
                    scaler.scale(loss).backward()
                    window_loss += loss.detach()
                if cfg.max_grad_norm is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                window_steps += 1
                window_items += items
                if step % cfg.log_every == 0 or step == num_steps:
                    elapsed = time.perf_counter() - window_start
                    mean_loss = window_loss.item() / window_steps  # the one host sync per log interval
                    if not math.isfinite(mean_loss):
                        raise UserError(f"training loss became {mean_loss} by step {step}; lower optimizer.lr or use precision=fp32")
                    lr = scheduler.get_last_lr()[0]
                    log.write({"step": step, "epoch": epoch, "train/loss": mean_loss, "train/lr": lr,
                               "train/samples_per_s": window_items / max(elapsed, 1e-9)})
                    if bar:
                        bar.update(task_id, info=f"loss {mean_loss:.4f} lr {lr:.2e} {window_items / max(elapsed, 1e-9):.1f} samples/s")
                    window_loss.zero_()
                    window_steps, window_items, window_start = 0, 0, time.perf_counter()
                if bar:
                    bar.update(task_id, advance=1)
                if cfg.eval_every > 0 and step % cfg.eval_every == 0:
                    evaluated_at = step
                    if stopped := run_eval(epoch):
                        break
                if step >= num_steps:
                    break
            if stopped:
                break
            if evaluated_at != step:
                stopped = run_eval(epoch)
            if stopped or step >= num_steps:
                break
    return FitResult(steps=step, best_value=best, best_step=best_step, stopped_early=stopped)
