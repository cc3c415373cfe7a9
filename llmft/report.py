"""What a run tells people: metrics.jsonl, progress bars, the final table, the loss/metric plot."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console(stderr=True)
T = TypeVar("T")


class MetricsLog:
    """Appends one JSON object per logged step or eval to metrics.jsonl and keeps them for the plot."""

    def __init__(self, path: Optional[Path], sink: Any = None):
        self.path, self.sink = path, sink  # sink: an experiment tracker (llmft.loggers) fed the same records
        self.records: list[dict[str, Any]] = []
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)
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


def track(items: Iterable[T], total: Optional[int], description: str, enabled: bool) -> Iterator[T]:
    """Iterate with a (nested, transient) progress bar."""
    if not enabled:
        yield from items
        return
    with progress_bar(True) as bar:
        assert bar is not None
        task = bar.add_task(description, total=total, info="")
        for item in items:
            yield item
            bar.advance(task)
        bar.remove_task(task)


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
    Console().print(metrics_table(title, metrics))


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
