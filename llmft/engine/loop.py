"""The one training loop: autocast, GradScaler, accumulation, clipping, periodic eval, best checkpoint,
early stopping, resumable checkpoints and a clean stop on SIGINT/SIGTERM.

It knows nothing about tasks: it sees batches, a summed loss with its item count, and callbacks.
"""

from __future__ import annotations

import itertools
import math
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional, Protocol, runtime_checkable

import torch

from llmft.config import MetricMode, NonFinite, PrecisionMode, TrainerConfig
from llmft.data.packing import packed_volume
from llmft.engine.distributed import Dist
from llmft.engine.log_window import LogWindow
from llmft.engine.precision import Precision
from llmft.engine.strategy import SingleProcess, Strategy
from llmft.errors import UserError
from llmft.reporting.console import TrainingProgress, scalar_metrics, training_progress

Batch = dict[str, torch.Tensor]


class LossFn(Protocol):
    def count(self, batch: Batch) -> int: ...
    def loss_sum(self, model: Any, batch: Batch) -> torch.Tensor: ...


@runtime_checkable
class LogsTerms(Protocol):
    """A loss that also sums named terms over its items (the preference families' rewards and log-probs): the train
    log shows their means over the items of the logged steps, as `train/<name>`, or over a `count/<group>` term it
    also sums (engine/log_window.term_means). Every batch returns the same names (zero sums where a group is absent),
    so the processes of a torchrun gather the same terms."""

    def loss_terms(self, model: Any, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


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
    log_windows: list[dict[str, Any]] = field(default_factory=list)  # each rank's unlogged steps, restored on resume
    data_position: Optional[dict[str, Any]] = None  # a streamed train split: where its reader stands (data/streaming.py)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Hooks:
    """What the loop calls out to: evaluation, best-checkpoint saving, resumable-state saving, metrics records."""

    evaluate: Callable[[], dict[str, Any]]
    on_best: Callable[[int, dict[str, Any]], None]
    save_state: Callable[[LoopState], None] = lambda state: None
    record: Callable[[dict[str, Any]], None] = lambda record: None  # one metrics record (the run's metrics.jsonl)


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
    """Optimizer steps the run will take (what the scheduler plans for): `max_steps` when set (as in transformers'
    Trainer: epochs repeat as needed, `epochs` is ignored), else every epoch."""
    return cfg.max_steps if cfg.max_steps > 0 else steps_per_epoch(num_batches, cfg) * cfg.epochs


@contextmanager
def stop_requests(note: str = "stopping after this step and saving a checkpoint") -> Iterator[list[int]]:
    """Turn SIGINT/SIGTERM into a request the loop (or the final scoring) honours after the current step (batch);
    `note` is what the first signal prints."""
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
        message = f"\n{signal.Signals(signum).name}: {note}; {again} to stop at once without saving\n"
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


def batch_volume(batch: Batch) -> tuple[int, int]:
    """(samples, tokens) of a collated batch, counted on the host before it moves: rows, or for packed rows the examples
    in them (where positions restart, padding segments excluded); tokens are the non-padding input tokens (0 when the
    batch has no input ids). A row is a row: a batch that stacks several texts per row in its inputs (an embedding
    pair: anchors, then positives) keeps one entry per row in its other fields, so rows are the shortest first dim."""
    if "position_ids" in batch and "labels" in batch:
        return packed_volume(batch)
    rows = min((int(v.shape[0]) for v in batch.values() if getattr(v, "ndim", 0) > 0), default=0)
    if "input_ids" not in batch:
        return rows, 0
    mask = batch.get("attention_mask")
    return rows, int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())


@dataclass
class StepParts:
    """What one optimizer step needs besides the batches."""

    model: Any
    loss_fn: LossFn
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    precision: Precision
    cfg: TrainerConfig
    dist: Dist
    strategy: Optional[Strategy] = None  # None: one process
    terms: dict[str, torch.Tensor] = field(default_factory=dict)  # the last step's term sums (a LogsTerms loss)

    def __post_init__(self) -> None:
        self.strategy = self.strategy or SingleProcess(self.dist)


def optimizer_step(parts: StepParts, group: list[Batch], state: LoopState) -> Optional[torch.Tensor]:
    """Forward/backward over one accumulation group, then clip, step, update the scaler and the schedule. Returns the
    group's loss (on the device), or None when a non-finite loss skipped the update. The loss is normalised by the
    items of the whole global batch, so N processes with batch B follow the curve of one process with batch N*B.
    A loss that logs terms (LogsTerms) adds this group's sums to the emptied `parts.terms`."""
    model, dist, precision, scaler, cfg = parts.model, parts.dist, parts.precision, parts.scaler, parts.cfg
    local_items = sum(parts.loss_fn.count(b) for b in group)  # normalise by the whole group, not per micro-batch
    items = int(dist.sum_number(local_items)) if dist.enabled else local_items
    group_loss = torch.zeros((), device=precision.device)
    parts.terms.clear()
    for i, batch in enumerate(group):
        batch = {k: v.to(precision.device, non_blocking=True) for k, v in batch.items()}
        with parts.strategy.gradient_sync(
            model, i == len(group) - 1
        ):  # a fresh context per micro-batch, around forward and backward
            with precision.autocast():
                loss = _loss_sum(parts.loss_fn, model, batch, parts.terms) / max(items, 1)
            scaler.scale(loss * dist.world).backward()  # DDP averages gradients over ranks; undo it
        group_loss += loss.detach()
    if precision.mode is not PrecisionMode.fp16 and not torch.isfinite(dist.sum(group_loss)):
        parts.optimizer.zero_grad(set_to_none=True)
        if cfg.nonfinite is NonFinite.stop:
            raise NonFiniteLoss(
                f"the loss became {group_loss.item()} at step {state.step + 1} (epoch {state.epoch}). "
                "Lower optimizer.lr, check the data, or set trainer.nonfinite=skip"
            )
        state.skipped_steps += 1
        return None
    if cfg.max_grad_norm is not None:
        scaler.unscale_(parts.optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    scale_before = scaler.get_scale() if scaler.is_enabled() else 0.0
    scaler.step(parts.optimizer)
    scaler.update()
    if scaler.is_enabled() and scaler.get_scale() < scale_before:
        state.skipped_steps += 1  # fp16 overflow: the GradScaler skipped this update, so the schedule does not advance
    else:
        parts.scheduler.step()
    parts.optimizer.zero_grad(set_to_none=True)
    return group_loss


def _loss_sum(loss_fn: LossFn, model: Any, batch: Batch, terms: dict[str, torch.Tensor]) -> torch.Tensor:
    if not isinstance(loss_fn, LogsTerms):
        return loss_fn.loss_sum(model, batch)
    loss, sums = loss_fn.loss_terms(model, batch)
    for name, value in sums.items():
        terms[name] = terms[name] + value.detach().double() if name in terms else value.detach().double()
    return loss


def fit(
    parts: StepParts, loader: Any, selection: Selection, hooks: Hooks, num_steps: int, state: Optional[LoopState] = None
) -> LoopState:
    """Train for `num_steps` optimizer steps (epochs repeat as needed) or until early stopping; resumes from `state`."""
    state = state or LoopState()
    cfg, dist = parts.cfg, parts.dist
    per_epoch = batches_per_epoch(loader.batch_sampler.num_batches, cfg)
    parts.model.train()
    saved = state.log_windows[dist.rank] if dist.rank < len(state.log_windows) else None
    epochs = 0 if cfg.max_steps > 0 else cfg.epochs  # max_steps: epochs repeat as needed
    with training_progress(num_steps, state.step, epochs, cfg.progress, dist.main) as progress, stop_requests() as requested:
        steps = Steps(
            parts, selection, hooks, num_steps, per_epoch, LogWindow(parts.precision.device, saved), progress, requested
        )
        while (cfg.max_steps > 0 or state.epoch < cfg.epochs) and state.step < num_steps and not state.stopped_early:
            if state.batches_done >= per_epoch:  # an epoch whose last group was skipped (non-finite loss)
                state.epoch, state.batches_done = state.epoch + 1, 0
                continue
            loader.batch_sampler.set_position(state.epoch, state.batches_done)
            for group in _groups(loader, per_epoch - state.batches_done, cfg.grad_accum_steps):
                if steps.run(group, state):
                    break
    return state


@dataclass
class Steps:
    """One optimizer step and what follows it: the logging window, periodic eval, the resumable checkpoint, a stop."""

    parts: StepParts
    selection: Selection
    hooks: Hooks
    num_steps: int
    per_epoch: int  # micro-batches per epoch on this process
    window: LogWindow
    progress: TrainingProgress
    requested: list[int]  # the stop signals received

    def run(self, group: list[Batch], state: LoopState) -> bool:
        """Train on one accumulation group; True when the epoch (or the run) ends after it."""
        parts, cfg = self.parts, self.parts.cfg
        volume = [batch_volume(b) for b in group]
        lr = parts.scheduler.get_last_lr()[0]  # the rate this step uses
        skipped_before = state.skipped_steps
        group_loss = optimizer_step(parts, group, state)
        state.batches_done += len(group)
        if group_loss is None:
            return False
        state.step += 1
        overflowed = state.skipped_steps > skipped_before  # fp16: the GradScaler skipped the update
        self.window.add(None if overflowed else group_loss, sum(v[0] for v in volume), sum(v[1] for v in volume))
        if not overflowed:
            self.window.add_terms(parts.terms, sum(parts.loss_fn.count(b) for b in group))
        self.progress.step()
        epoch_end = state.batches_done >= self.per_epoch
        if state.step % cfg.log_every == 0 or state.step == self.num_steps or epoch_end:
            _log(self.window, self.hooks, state, lr, parts, self.progress)
            self.window = LogWindow(parts.precision.device)
        started = time.perf_counter()
        if (cfg.eval_every > 0 and state.step % cfg.eval_every == 0) or epoch_end or state.step == self.num_steps:
            _evaluate(self.hooks, self.selection, state, cfg, self.progress)
        self.window.exclude(time.perf_counter() - started)  # the eval and the best checkpoint's save are not training
        if epoch_end:
            state.epoch, state.batches_done = state.epoch + 1, 0
        started = time.perf_counter()
        _after_step(state, self.window, self.hooks, self.requested, parts.dist, cfg, epoch_end, self.num_steps)
        self.window.exclude(time.perf_counter() - started)  # nor the resumable checkpoint's
        return state.step >= self.num_steps or state.stopped_early or epoch_end


def _after_step(
    state: LoopState,
    window: LogWindow,
    hooks: Hooks,
    requested: list[int],
    dist: Dist,
    cfg: TrainerConfig,
    epoch_end: bool,
    num_steps: int,
) -> None:
    """Save a resumable checkpoint when due (with every rank's log window); stop every rank after the same step on a
    signal, even if it reached them apart."""
    stop = bool(requested)
    if dist.enabled:
        stop = dist.sum_number(float(stop)) > 0
    finished = state.step >= num_steps or state.stopped_early
    if (cfg.save_every > 0 and state.step % cfg.save_every == 0) or epoch_end or finished or stop:
        state.log_windows = dist.gather(window.saved())  # a collective: every rank saves
        hooks.save_state(state)
    if stop:
        raise Interrupted(requested[0] if requested else signal.SIGTERM, state.step)


def _log(window: LogWindow, hooks: Hooks, state: LoopState, lr: float, parts: StepParts, progress: TrainingProgress) -> None:
    record = {"step": state.step, "epoch": state.epoch, **window.record(parts.dist), "train/lr": lr}
    if parts.precision.mode is PrecisionMode.fp16:
        record.update({"train/grad_scale": parts.scaler.get_scale(), "train/skipped_steps": state.skipped_steps})
    hooks.record(record)
    progress.logged(record)


def _evaluate(hooks: Hooks, selection: Selection, state: LoopState, cfg: TrainerConfig, progress: TrainingProgress) -> None:
    """Score the eval split, keep the best checkpoint, count evals without improvement for early stopping."""
    metrics = hooks.evaluate()
    if selection.metric not in metrics:
        raise UserError(f"select_metric '{selection.metric}' is not an eval metric; have: {', '.join(scalar_metrics(metrics))}")
    record = {"step": state.step, "epoch": state.epoch, **{f"eval/{k}": v for k, v in scalar_metrics(metrics).items()}}
    hooks.record(record)
    progress.evaluated(record)
    value = float(metrics[selection.metric])
    if selection.better(value, state.best_value):
        state.best_value, state.best_step, state.stale_evals = value, state.step, 0
        hooks.on_best(state.step, metrics)
    else:
        state.stale_evals += 1
    if cfg.early_stopping_patience > 0 and state.stale_evals >= cfg.early_stopping_patience:
        state.stopped_early = True
