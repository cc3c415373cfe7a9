"""The ranked table at the end of a sweep: every job's overrides and its selection metric."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml
from hydra.experimental.callback import Callback

from llmft.errors import UserError
from llmft.runs.run_folder import RunFolder


@dataclass
class JobRow:
    job: str
    overrides: str
    metric: str
    value: Optional[float]
    status: str


def _read_job(job_dir: Path) -> Optional[JobRow]:
    overrides_file = RunFolder(job_dir).saved_overrides
    if not overrides_file.is_file():
        return None
    overrides = " ".join(yaml.safe_load(overrides_file.read_text()) or [])
    result_file = RunFolder(job_dir).eval_json
    if not result_file.is_file():
        return JobRow(job_dir.name, overrides, "", None, "failed")
    result = json.loads(result_file.read_text())
    metric = result.get("select_metric", "")
    value = result.get("select_value")
    return JobRow(job_dir.name, overrides, metric, value, "ok")


def collect(sweep_dir: Path) -> tuple[list[JobRow], str]:
    """Read every job folder under a sweep folder and rank them best first (showing only what was swept)."""
    rows = [row for d in sorted(sweep_dir.iterdir(), key=_job_order) if d.is_dir() and (row := _read_job(d))]
    if len(rows) > 1:
        common = set.intersection(*(set(r.overrides.split()) for r in rows))
        for r in rows:
            r.overrides = " ".join(o for o in r.overrides.split() if o not in common)
    mode = "max"
    for d in sweep_dir.iterdir():
        result_file = RunFolder(d).eval_json
        if result_file.is_file():
            mode = json.loads(result_file.read_text()).get("select_mode", "max")
            break
    done = [r for r in rows if r.value is not None]
    done.sort(key=lambda r: r.value, reverse=(mode == "max"))
    return done + [r for r in rows if r.value is None], mode


def _job_order(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (1 << 30, path.name)


def write_summary(sweep_dir: Path) -> list[JobRow]:
    """Write summary.csv, summary.md and summary.png at the sweep root and print the table."""
    if not sweep_dir.is_dir():
        raise UserError(f"sweep folder not found: {sweep_dir}")
    rows, mode = collect(sweep_dir)
    _plot(rows, sweep_dir / "summary.png")
    with open(sweep_dir / "summary.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["rank", "job", "overrides", "metric", "value", "status"])
        for rank, r in enumerate(rows, 1):
            writer.writerow([rank, r.job, r.overrides, r.metric, "" if r.value is None else r.value, r.status])
    lines = [
        f"Sweep {sweep_dir} — ranked by {rows[0].metric if rows else '?'} ({mode})",
        "",
        "| rank | job | overrides | metric | value | status |",
        "|---:|---|---|---|---:|---|",
    ]
    for rank, r in enumerate(rows, 1):
        value = "" if r.value is None else f"{r.value:.4f}"
        lines.append(f"| {rank} | {r.job} | `{r.overrides}` | {r.metric} | {value} | {r.status} |")
    (sweep_dir / "summary.md").write_text("\n".join(lines) + "\n")
    _print_table(rows, sweep_dir)
    _write_fold_means(rows, mode, sweep_dir)
    return rows


def fold_means(rows: list[JobRow], mode: str) -> list[tuple[str, float, float, int]]:
    """Jobs that differ only in `task.data.fold` grouped into one configuration each: (its other overrides, the mean
    and sample std of the selection metric over its folds, how many folds finished), best mean first."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        overrides = r.overrides.split()
        if not any(o.startswith("task.data.fold=") for o in overrides):
            continue
        key = " ".join(o for o in overrides if not o.startswith("task.data.fold="))
        groups.setdefault(key, [])
        if r.value is not None:
            groups[key].append(r.value)
    import statistics

    out = [(key, statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v)) for key, v in groups.items() if v]
    return sorted(out, key=lambda t: t[1], reverse=(mode == "max"))


def _write_fold_means(rows: list[JobRow], mode: str, sweep_dir: Path) -> None:
    """folds.csv and a printed ranking when the sweep ran cross-validation folds (`task.data.fold=0,1,...`)."""
    means = fold_means(rows, mode)
    if not means:
        return
    with open(sweep_dir / "folds.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["rank", "overrides", "metric", "mean", "std", "folds"])
        writer.writerows([[rank, key or "(all)", rows[0].metric, m, sd, n] for rank, (key, m, sd, n) in enumerate(means, 1)])
    print(f"Ranked by the fold mean of {rows[0].metric} ({sweep_dir / 'folds.csv'}):")
    for rank, (key, m, sd, n) in enumerate(means, 1):
        print(f"  {rank}. {key or '(all)'}: {m:.4f} ± {sd:.4f} over {n} folds")


def _plot(rows: list[JobRow], path: Path) -> None:
    """The selection metric against each numeric swept value (one panel per swept key)."""
    points: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        for override in r.overrides.split():
            key, _, value = override.partition("=")
            try:
                if r.value is not None:
                    points.setdefault(key, []).append((float(value), r.value))
            except ValueError:
                continue
    if not points:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(points), figsize=(5 * len(points), 3.5), squeeze=False)
    for ax, (key, xy) in zip(axes[0], sorted(points.items())):
        xy.sort()
        ax.plot([x for x, _ in xy], [y for _, y in xy], "o-")
        if min(x for x, _ in xy) > 0 and max(x for x, _ in xy) / min(x for x, _ in xy) > 20:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(rows[0].metric)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _print_table(rows: list[JobRow], sweep_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Sweep summary ({sweep_dir / 'summary.csv'})")
    for name in ("rank", "job", "overrides", "metric", "value", "status"):
        table.add_column(name)
    for rank, r in enumerate(rows, 1):
        value = "" if r.value is None else f"{r.value:.4f}"
        table.add_row(str(rank), r.job, r.overrides, r.metric, value, r.status)
    Console().print(table)


class SweepSummaryCallback(Callback):
    """Hydra callback: after the last job of a multirun, rank the jobs."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            write_summary(sweep_dir)
