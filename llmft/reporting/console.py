"""What a run tells people: metrics.jsonl, progress bars, the final table, the loss/metric plot."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console(stderr=True)
console.soft_wrap = not console.is_terminal  # in a file, a long line (a run folder's path) stays whole
log = logging.getLogger("llmft")  # the run's log: train.log in the run folder (conf/hydra/job_logging/llmft.yaml)
T = TypeVar("T")


class MetricsLog:
    """Appends one JSON object per logged step or eval to metrics.jsonl (the plot re-reads the file) and feeds `sink`."""

    def __init__(self, path: Optional[Path], sink: Any = None):
        self.path, self.sink = path, sink  # sink: an experiment tracker (llmft.reporting.trackers) fed the same records
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        if self.sink is not None:
            self.sink.log(record)

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()


_active: list[Progress] = []  # the live display, so eval bars nest inside the training bar


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Optional[Progress]]:
    """A rich progress display (step, loss, lr, samples/s, ETA) or None when disabled."""
    if not enabled:
        yield None
        return
    if _active:
        yield _active[-1]
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    with progress:
        _active.append(progress)
        try:
            yield progress
        finally:
            _active.pop()


def live() -> bool:
    """Whether stderr is a terminal that can redraw a progress bar; elsewhere (a file, a pipe, a batch job's log)
    progress is a plain line per log interval."""
    return console.is_terminal


def track(items: Iterable[T], total: Optional[int], description: str, enabled: bool) -> Iterator[T]:
    """Iterate with a (nested, transient) progress bar on a terminal."""
    if not (enabled and live()):
        yield from items
        return
    with progress_bar(True) as bar:
        assert bar is not None
        task = bar.add_task(description, total=total, info="")
        for item in items:
            yield item
            bar.advance(task)
        bar.remove_task(task)


class TrainingProgress:
    """What a person watching a training run sees: a rich bar on a terminal, a plain line per log interval elsewhere
    (no control codes); every line also goes to the run's log (train.log), shown or not."""

    def __init__(self, total: int, completed: int, epochs: int, show: bool, bar: Optional[Progress], main: bool = True):
        self.total, self.completed, self.epochs, self.show, self.bar, self.main = total, completed, epochs, show, bar, main
        self.first, self.start = completed, time.perf_counter()  # the ETA counts the steps of this process (a resume)
        self.task = bar.add_task("train", total=total, completed=completed, info="") if bar else None

    def step(self) -> None:
        self.completed += 1
        if self.bar:
            self.bar.update(self.task, advance=1)

    def logged(self, record: dict[str, Any]) -> None:
        """A train record of metrics.jsonl: the bar's info on a terminal, else a line; a line in train.log always."""
        loss, lr, samples = record.get("train/loss", float("nan")), record["train/lr"], record["train/samples_per_s"]
        if self.bar:
            self.bar.update(self.task, info=f"loss {loss:.4f} lr {lr:.2e} {samples:.1f} samples/s")
        elapsed = time.perf_counter() - self.start
        done = self.completed - self.first
        eta = _clock(elapsed / done * (self.total - self.completed)) if done else "?"
        epoch = f"{record['epoch'] + 1}/{self.epochs}" if self.epochs else str(record["epoch"] + 1)
        speed = f"{samples:.1f} samples/s"
        if "train/tokens_per_s" in record:
            speed += f" | {record['train/tokens_per_s']:.0f} tokens/s"
        self._say(
            f"train step {self.completed}/{self.total} | epoch {epoch} | loss {loss:.4f} | lr {lr:.2e} | {speed} | "
            f"elapsed {_clock(elapsed)} | eta {eta}"
        )

    def evaluated(self, record: dict[str, Any]) -> None:
        """An eval record: its overall metrics in one line (per-class ones are in metrics.jsonl)."""
        metrics = {k[len("eval/") :]: v for k, v in record.items() if k.startswith("eval/") and "/" not in k[len("eval/") :]}
        values = " | ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        self._say(f"eval  step {record['step']}/{self.total} | {values}")

    def _say(self, line: str) -> None:
        if not self.main:  # under torchrun, rank 0 tells
            return
        log.info(line)  # train.log (the console handler shows warnings only)
        if self.show and not self.bar:
            print(line, file=sys.stderr, flush=True)


@contextmanager
def training_progress(total: int, completed: int, epochs: int, enabled: bool, main: bool = True) -> Iterator[TrainingProgress]:
    """The training run's progress, told by the main process: shown when `enabled` (a bar on a terminal, lines
    elsewhere), logged always."""
    with progress_bar(enabled and main and live()) as bar:
        yield TrainingProgress(total, completed, epochs, enabled and main, bar, main)


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds)))


_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def plain(text: str) -> str:
    """`text` without ANSI colour codes (some libraries colour what they log, whatever the stream)."""
    return _COLOUR.sub("", text)


class ConsoleFormatter(logging.Formatter):
    """Warnings on the console: llmft's own as they are, another library's after its name (as `[transformers] ...`)."""

    def format(self, record: logging.LogRecord) -> str:
        message = plain(super().format(record))
        if record.name.split(".")[0] in ("llmft", "py"):  # py.warnings: already says where it comes from
            return message
        return f"[{record.name.split('.')[0]}] {message}"


class ConsoleFilter(logging.Filter):
    """Lets through all but records meant for the run's log only (`extra={"console": False}`: what llmft already printed)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "console", True)


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def metrics_table(title: str, metrics: dict[str, Any]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in scalar_metrics(metrics).items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    if "confusion_matrix" in metrics:
        table.add_row("confusion_matrix", str(metrics["confusion_matrix"]))
    return table


def print_metrics(title: str, metrics: dict[str, Any]) -> None:
    """The metrics table on stdout (off a terminal, its title on a line of its own: a run folder's path stays whole),
    and a line in the run's log."""
    out = Console()
    if out.is_terminal:
        out.print(metrics_table(title, metrics))
    else:
        out.print(title, markup=False, soft_wrap=True)
        out.print(metrics_table("", metrics))
    values = (f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in scalar_metrics(metrics).items())
    log.info(f"{title}: " + " | ".join(values))


def plot_curves(records: list[dict[str, Any]], select_metric: str, path: Path) -> None:
    """loss.png: train and eval loss against step, and the selection metric on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["train/loss"]) for r in records if "train/loss" in r]
    evals = [r for r in records if "eval/loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train/loss", color="tab:blue")
    if evals:
        ax.plot([r["step"] for r in evals], [r["eval/loss"] for r in evals], "o-", label="eval/loss", color="tab:orange")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    key = f"eval/{select_metric}"
    handles, labels = ax.get_legend_handles_labels()
    if any(key in r for r in evals):
        ax2 = ax.twinx()
        ax2.plot([r["step"] for r in evals if key in r], [r[key] for r in evals if key in r], "s--", color="tab:green", label=key)
        ax2.set_ylabel(select_metric)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="best")
    ax.set_title("training curves")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_plan(plan: dict[str, Any]) -> None:
    """The dry-run table: one row per planned quantity, data statistics per split."""
    table = Table(title="llmft train — dry run (nothing trained)")
    table.add_column("item")
    table.add_column("value")
    for key, value in plan.items():
        if key == "data" and isinstance(value, dict):
            for role, stats in value.items():
                table.add_row(f"data/{role}", ", ".join(f"{k}={v}" for k, v in stats.items()))
            continue
        table.add_row(key, str(value))
    Console().print(table)
