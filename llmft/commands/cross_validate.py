"""`llmft train trainer.cv_folds=k`: k runs of the same config, fold i of train held out as run i's validation split
(llmft/data/folds.py), each a run folder `fold-i/` under the job's folder; then every metric's mean +- std over the
folds and the per-fold table (cv_summary.csv, cv_summary.md, cv.json). `task.data.folds=k task.data.fold=0,...` in a
`-m` sweep trains the same folds as separate jobs, and the sweep summary ranks configurations by their fold mean."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from omegaconf import OmegaConf

from llmft.config import TrainConfig
from llmft.errors import UserError
from llmft.runs.run_folder import RunFolder


def cross_validate(config: TrainConfig, out_dir: Path, resolved: Optional[dict[str, Any]], train: Callable[..., float]) -> float:
    """Train every fold into its own run folder; write and print the summary; return the mean selection value."""
    if config.task.data.folds:
        raise UserError(
            "trainer.cv_folds trains every fold itself: drop task.data.folds/fold (or sweep task.data.fold with -m "
            "and no trainer.cv_folds)"
        )
    if config.trainer.resume:
        raise UserError("trainer.cv_folds cannot resume; resume one fold's run with trainer.resume=<run folder>/fold-<i>")
    k = config.trainer.cv_folds
    for i in range(k):
        fold_config, fold_resolved = _fold(config, resolved, k, i)
        fold_dir = out_dir / f"fold-{i}"
        _save_config(fold_dir, fold_resolved, i, k)
        print(f"llmft train: cross-validation fold {i + 1}/{k} -> {fold_dir}", flush=True)
        train(fold_config, fold_dir, fold_resolved)
    rows = [fold_row(out_dir / f"fold-{i}") for i in range(k)]
    summary = write_summary(out_dir, rows, config.task.select_metric)
    return float(summary["mean"].get(f"eval/{config.task.select_metric}", float("nan")))


def _fold(config: TrainConfig, resolved: Optional[dict[str, Any]], k: int, i: int) -> tuple[TrainConfig, dict[str, Any]]:
    fold_config = copy.deepcopy(config)
    fold_config.trainer.cv_folds = 0
    fold_config.task.data.folds, fold_config.task.data.fold = k, i
    fold_resolved = copy.deepcopy(resolved) if resolved else OmegaConf.to_container(OmegaConf.structured(config))
    assert isinstance(fold_resolved, dict)
    fold_resolved["trainer"]["cv_folds"] = 0
    fold_resolved["task"]["data"].update({"folds": k, "fold": i})
    return fold_config, fold_resolved


def _save_config(fold_dir: Path, resolved: dict[str, Any], i: int, k: int) -> None:
    """The fold's config where Hydra keeps a run's, so eval/generate/export take `run=<folder>/fold-i`."""
    folder = RunFolder(fold_dir)
    folder.saved_config.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(resolved), folder.saved_config)
    folder.saved_overrides.write_text(f"- task.data.folds={k}\n- task.data.fold={i}\n")


def fold_row(run_dir: Path) -> dict[str, float]:
    """A finished fold's scalar metrics: its held-out fold at the best checkpoint (`eval/...`, from metrics.jsonl) and
    the test split (`test/...`, from eval.json)."""
    result = json.loads(RunFolder(run_dir).eval_json.read_text())
    records = [json.loads(x) for x in RunFolder(run_dir).metrics.read_text().splitlines() if x.strip()]
    best = [r for r in records if r.get("step") == result["best_step"] and any(k.startswith("eval/") for k in r)]
    row = {k: float(v) for k, v in (best[-1] if best else {}).items() if k.startswith("eval/") and _number(v)}
    row.update({f"test/{k}": float(v) for k, v in result["metrics"].items() if _number(v)})
    return row


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def write_summary(out_dir: Path, rows: list[dict[str, float]], select_metric: str) -> dict[str, Any]:
    """cv.json (per-fold metrics, mean, std), cv_summary.csv (a row per fold, then mean and std) and cv_summary.md;
    prints the table. The std is the sample standard deviation (ddof=1) over the folds."""
    keys = sorted({k for r in rows for k in r}, key=lambda k: (not k.endswith(select_metric), k))
    values = {k: np.array([r.get(k, np.nan) for r in rows], dtype=float) for k in keys}
    mean = {k: float(np.nanmean(v)) for k, v in values.items()}
    std = {k: float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else 0.0 for k, v in values.items()}
    summary = {"folds": len(rows), "select_metric": select_metric, "per_fold": rows, "mean": mean, "std": std}
    (out_dir / "cv.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(out_dir / "cv_summary.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["fold", *keys])
        writer.writerows([[i, *(r.get(k, "") for k in keys)] for i, r in enumerate(rows)])
        writer.writerow(["mean", *(mean[k] for k in keys)])
        writer.writerow(["std", *(std[k] for k in keys)])
    lines = [f"{k}: {mean[k]:.4f} ± {std[k]:.4f}" for k in keys]
    table = ["| fold | " + " | ".join(keys) + " |", "|---:|" + "---:|" * len(keys)]
    table += [f"| {i} | " + " | ".join(f"{r.get(k, float('nan')):.4f}" for k in keys) + " |" for i, r in enumerate(rows)]
    (out_dir / "cv_summary.md").write_text(
        f"# {len(rows)}-fold cross-validation\n\n" + "\n".join(f"- {x}" for x in lines) + "\n\n" + "\n".join(table) + "\n"
    )
    _print(out_dir, rows, keys, lines)
    return summary


def _print(out_dir: Path, rows: list[dict[str, float]], keys: list[str], lines: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"{len(rows)}-fold cross-validation ({out_dir / 'cv_summary.csv'}): mean ± std over the folds", highlight=False)
    for line in lines:
        console.print(f"  {line}", highlight=False)
    shown = [k for k in keys if "/" not in k.split("/", 1)[1]]  # per-class figures stay in the CSV
    table = Table(title="per fold")
    for name in ("fold", *shown):
        table.add_column(name)
    for i, r in enumerate(rows):
        table.add_row(str(i), *(f"{r.get(k, float('nan')):.4f}" for k in shown))
    console.print(table)
