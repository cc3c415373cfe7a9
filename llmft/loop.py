"""The one training loop: autocast, GradScaler, accumulation, clipping, periodic eval, best checkpoint,
early stopping, resumable checkpoints and a clean stop on SIGINT/SIGTERM.

It knows nothing about tasks: it sees batches, a summed loss with its item count, and callbacks.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional, Protocol

import torch

from llmft.config import MetricMode, NonFinite, PrecisionMode, TrainerConfig
from llmft.distributed import Dist
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
class LoopState:
    """Where the loop is; saved with every resumable checkpoint."""

    step: int = 0
    epoch: int = 0
    batches_done: int = 0  # micro-batches of `epoch` already trained on
    best_value: Optional[float] = None
    best_step: int = 0
    stale_evals: int = 0
    skipped_steps: int = 0
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Hooks:
    """What the loop calls out to: evaluation, best-checkpoint saving, resumable-state saving."""

    evaluate: Callable[[], dict[str, Any]]
    on_best: Callable[[int, dict[str, Any]], None]
    save_state: Callable[[LoopState], None] = lambda state: None
    log: MetricsLog = field(default_factory=lambda: MetricsLog(None))


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; the current step finished and a checkpoint was written."""

    def __init__(self, signum: int, step: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}")
        self.signum, self.step = signum, step


class NonFiniteLoss(UserError):
    """The loss became NaN/inf in fp32/bf16 (fp16 overflow is the GradScaler's to skip)."""


def steps_per_epoch(num_batches: int, cfg: TrainerConfig) -> int:
    return math.ceil(batches_per_epoch(num_batches, cfg) / cfg.grad_accum_steps)


def batches_per_epoch(num_batches: int, cfg: TrainerConfig) -> int:
    return min(num_batches, cfg.limit_train_batches) if cfg.limit_train_batches > 0 else num_batches


def total_steps(num_batches: int, cfg: TrainerConfig) -> int:
    """Optimizer steps the run will take (what the scheduler plans for)."""
    planned = steps_per_epoch(num_batches, cfg) * cfg.epochs
    return min(planned, cfg.max_steps) if cfg.max_steps > 0 else planned


@contextmanager
def stop_requests() -> Iterator[list[int]]:
    """Turn SIGINT/SIGTERM into a request the loop honours after the current step."""
    requested: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: Any) -> None:
        if requested:  # a second Ctrl-C: stop now
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        requested.append(signum)
        again = "press Ctrl-C again" if signum == signal.SIGINT else "send it again"
        message = f"\n{signal.Signals(signum).name}: stopping after this step and saving a checkpoint; {again} to stop at once without saving\n"
        os.write(2, message.encode())  # not print(): a handler may interrupt a write to sys.stderr (a reentrant call fails)

    for s in previous:
        signal.signal(s, handler)
    try:
        yield requested
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _groups(loader: Iterable[Batch], remaining: int, accum: int) -> Iterator[list[Batch]]:
    """The rest of an epoch's micro-batches, grouped by optimizer step."""
    batches = itertools.islice(iter(loader), remaining)
    while group := list(itertools.islice(batches, accum)):
        yield group


def fit(
    model: Any,
    loss_fn: LossFn,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    precision: Precision,
    cfg: TrainerConfig,
    selection: Selection,
    hooks: Hooks,
    num_steps: int,
    state: Optional[LoopState] = None,
    dist: Optional[Dist] = None,
) -> LoopState:
    """Train until `num_steps` optimizer steps, the last epoch, or early stopping; resumes from `state`.

    Under torchrun each rank trains on its shard; the loss is normalised by the items of the whole
    global batch, so N processes with batch B follow the same curve as one process with batch N*B."""
    state = state or LoopState()
    dist = dist or Dist()
    device = precision.device
    per_epoch = batches_per_epoch(math.ceil(loader.sampler.shard_size / loader.batch_size), cfg)
    model.train()
    window = {"loss": torch.zeros((), device=device), "steps": 0, "items": 0, "start": time.perf_counter()}

    def run_eval() -> None:
        metrics = hooks.evaluate()
        if selection.metric not in metrics:
            raise UserError(f"select_metric '{selection.metric}' is not an eval metric; have: {', '.join(scalar_metrics(metrics))}")
        hooks.log.write({"step": state.step, "epoch": state.epoch, **{f"eval/{k}": v for k, v in scalar_metrics(metrics).items()}})
        value = float(metrics[selection.metric])
        if selection.better(value, state.best_value):
            state.best_value, state.best_step, state.stale_evals = value, state.step, 0
            hooks.on_best(state.step, metrics)
        else:
            state.stale_evals += 1
        if cfg.early_stopping_patience > 0 and state.stale_evals >= cfg.early_stopping_patience:
            state.stopped_early = True

    def log_window(bar: Any, task_id: Any) -> None:
        elapsed = max(time.perf_counter() - window["start"], 1e-9)
        mean_loss = dist.sum(window["loss"]).item() / max(window["steps"], 1)  # the one host sync per log interval
        record = {"step": state.step, "epoch": state.epoch, "train/loss": mean_loss,
                  "train/lr": scheduler.get_last_lr()[0], "train/samples_per_s": window["items"] / elapsed}
        if precision.mode is PrecisionMode.fp16:
            record.update({"train/grad_scale": scaler.get_scale(), "train/skipped_steps": state.skipped_steps})
        hooks.log.write(record)
        if bar:
            bar.update(task_id, info=f"loss {mean_loss:.4f} lr {record['train/lr']:.2e} {record['train/samples_per_s']:.1f} samples/s")
        window.update(loss=torch.zeros((), device=device), steps=0, items=0, start=time.perf_counter())

    with progress_bar(cfg.progress) as bar, stop_requests() as requested:
        task_id = bar.add_task("train", total=num_steps, completed=state.step, info="") if bar else None
        while state.epoch < cfg.epochs and state.step < num_steps and not state.stopped_early:
            if state.batches_done >= per_epoch:  # an epoch whose last group was skipped (non-finite loss)
                state.epoch, state.batches_done = state.epoch + 1, 0
                continue
            loader.sampler.set_position(state.epoch, state.batches_done * loader.batch_size)
            for group in _groups(loader, per_epoch - state.batches_done, cfg.grad_accum_steps):
                local_items = sum(loss_fn.count(b) for b in group)  # normalise by the whole group, not per micro-batch
                items = int(dist.sum(torch.tensor(local_items, device=device)).item()) if dist.enabled else local_items
                group_loss = torch.zeros((), device=device)
                for i, batch in enumerate(group):
                    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                    sync = contextlib.nullcontext() if i == len(group) - 1 or not dist.enabled else model.no_sync()
                    with sync, precision.autocast():
                        loss = loss_fn.loss_sum(model, batch) / max(items, 1)
                    with sync:
                        scaler.scale(loss * dist.world).backward()  # DDP averages gradients over ranks; undo it
                    group_loss += loss.detach()
                state.batches_done += len(group)
                if precision.mode is not PrecisionMode.fp16 and not torch.isfinite(dist.sum(group_loss)):
                    optimizer.zero_grad(set_to_none=True)
                    if cfg.nonfinite is NonFinite.stop:
                        raise NonFiniteLoss(
                            f"the loss became {group_loss.item()} at step {state.step + 1} (epoch {state.epoch}); "
                            "the last good checkpoint is kept. Lower optimizer.lr, check the data, or set trainer.nonfinite=skip"
                        )
                    state.skipped_steps += 1
                    continue
                if cfg.max_grad_norm is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                scale_before = scaler.get_scale() if scaler.is_enabled() else 0.0
                scaler.step(optimizer)
                scaler.update()
                if scaler.is_enabled() and scaler.get_scale() < scale_before:
                    state.skipped_steps += 1  # fp16 overflow: GradScaler skipped this update
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                window["loss"] += group_loss
                window["steps"] += 1
                window["items"] += items
                if bar:
                    bar.update(task_id, advance=1)
                epoch_end = state.batches_done >= per_epoch
                if state.step % cfg.log_every == 0 or state.step == num_steps or epoch_end:
                    log_window(bar, task_id)
                if (cfg.eval_every > 0 and state.step % cfg.eval_every == 0) or epoch_end or state.step == num_steps:
                    run_eval()
                finished = state.step >= num_steps or state.stopped_early
                if epoch_end:
                    state.epoch, state.batches_done = state.epoch + 1, 0
                stop = bool(requested)
                if dist.enabled:  # every rank stops after the same step, even if the signal reached them apart
                    stop = dist.sum(torch.tensor(float(stop))).item() > 0
                if (cfg.save_every > 0 and state.step % cfg.save_every == 0) or epoch_end or finished or stop:
                    hooks.save_state(state)
                if stop:
                    raise Interrupted(requested[0] if requested else signal.SIGTERM, state.step)
                if finished or epoch_end:
                    break
    return state
