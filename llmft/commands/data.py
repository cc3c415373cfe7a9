"""`llmft data task=... [rows=5]`: what a run would train on, before it trains. The task prepares its splits exactly as
`llmft train` does (templates, truncation, dropped rows); the first rows are shown with their supervised tokens marked,
then counts, the token-length histogram and quality checks (duplicates, leakage, short texts), also written as
report.json and report.html to `output=<folder>` (default: this command's own output folder)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from llmft.commands.common import hydra_output_dir, quiet_libraries, to_typed
from llmft.data import mixing, quality
from llmft.data_report_config import DataReportConfig
from llmft.models import backbone
from llmft.reporting import data_report
from llmft.reporting.data_report import bracketed, styled, write
from llmft.tasks import get_task


def data_command(cfg: DictConfig) -> None:
    config = to_typed(cfg, DataReportConfig)
    quiet_libraries()
    report, pieces = build_report(config)
    color = sys.stdout.isatty() if config.color is None else config.color
    _print(report, pieces, color)
    folder = Path(config.output) if config.output else hydra_output_dir()

    paths = write(report, folder)
    print(f"report: {', '.join(str(p) for p in paths)}", file=sys.stderr)


def build_report(config: DataReportConfig) -> tuple[dict[str, Any], list[list[tuple[str, Any]]]]:
    """The splits as the task prepares them for training, measured; and the first `config.rows` rows rendered."""
    tokenizer_source, _ = backbone.resolve(config.model)
    tokenizer = backbone.load_tokenizer(tokenizer_source, config.model)
    task = get_task(config.task, tokenizer, config.model.max_length)
    splits = mixing.load_splits(config.task.data, lambda train: None)[0]  # one data set, or task.data.sources mixed
    features = task.prepare(splits)  # a user error in the data comes first
    checks = quality.report(splits, list(config.task.data.text_columns), config.min_chars, config.near_duplicate_threshold)
    id2label = {int(k): v for k, v in (task.head_kwargs().get("id2label") or {}).items()}
    plan = task.plan_info()
    stats = {
        role: {**data_report.split_stats(ds, tokenizer, id2label), **(plan.get("data", {}).get(role) or {})}
        for role, ds in features.items()
    }
    shown = features[config.split].select(range(min(config.rows, len(features[config.split]))))
    pieces = [data_report.row_views(tokenizer, row, id2label) for row in shown]
    template = getattr(tokenizer, "chat_template", None)
    report = {
        "task": config.task.family,
        "data": config.task.data.path,
        "model": config.model.name_or_path,
        "max_length": config.model.max_length,
        "format": plan.get("format"),
        "chat_template": template if isinstance(template, str) and plan.get("chat_template") else None,
        "splits": stats,
        "quality": checks,
        "split_shown": config.split,
        "rows": [
            {
                "views": {name: data_report.bracketed(p) for name, p in views},
                "text": "\n".join(f"{name}: {data_report.bracketed(p)}" for name, p in views),
            }
            for views in pieces
        ],
    }
    return report, pieces


def _print(report: dict[str, Any], rows: list[list[tuple[str, Any]]], color: bool) -> None:
    """Rows, then one line per split and the quality checks, on stdout (supervised runs styled or [[bracketed]])."""
    from rich.console import Console

    out = Console(force_terminal=color, no_color=not color, soft_wrap=True, highlight=False)
    legend = "supervised tokens highlighted" if color else "supervised tokens [[bracketed]]"
    out.print(f"llmft data: {report['task']} on {report['data']} (format: {report['format']}; {legend})", markup=False)
    for i, views in enumerate(rows):
        out.print(f"--- {report['split_shown']} row {i}", markup=False)
        for name, pieces in views:
            if color:
                out.print(f"{name}: ", end="", markup=False)
                out.print(styled(pieces))
            else:
                out.print(f"{name}: {bracketed(pieces)}", markup=False)
    for role, stats in report["splits"].items():
        out.print(f"{role}: " + ", ".join(f"{k}={v}" for k, v in stats.items() if k not in ("histogram",)), markup=False)
    quality = report["quality"]
    for role, checks in quality["splits"].items():
        out.print(
            f"quality {role}: exact duplicate rows {checks['exact_duplicate_rows']}, near-duplicate pairs "
            f"{checks['near_duplicate_pairs']}, empty or short texts {checks['empty_or_short']}",
            markup=False,
        )
    for role, leak in quality["leakage"].items():
        flag = "LEAKAGE: " if leak["exact"] or leak["near"] else ""
        out.print(
            f"{flag}{role} rows also in train: {leak['exact']} exact, {leak['near']} near (rows {leak['exact_rows'][:10]})",
            markup=False,
        )
    out.print(f"chat template: {'yes' if report['chat_template'] else 'none'}", markup=False)
