"""What `llmft train` prints about its data before the first step: the rows each split got, and per split what was
dropped, truncated or cut into blocks (and what each task.data.sources member gave)."""

from __future__ import annotations

import sys
from typing import Any

from llmft.commands.setup import RunParts
from llmft.config import TrainConfig
from llmft.data import splits as carving
from llmft.reporting.console import console


def print_splits(parts: RunParts, config: TrainConfig) -> None:
    """One line with the rows each split got; a warning per carved split too small to measure anything."""
    line, warnings = carving.describe(parts.splits, config.task.data)
    console.print(line, highlight=False)
    for warning in warnings:
        print(warning, file=sys.stderr)


def print_data_stats(stats: dict[str, dict[str, int]], sources: list[dict[str, Any]]) -> None:
    for source in sources:  # task.data.sources: what each gave the train split
        asked = (
            f"weight {source['weight']}"
            if "weight" in source
            else f"{source['rows_asked']} rows asked"
            if "rows_asked" in source
            else "all rows"
        )
        tokens = f", {source['tokens']:,} tokens" if "tokens" in source else ""
        console.print(
            f"  source {source['name']} ({source['path']}, {asked}): {source['rows']:,} train rows{tokens}",
            highlight=False,
            soft_wrap=True,
        )

    for role, counts in stats.items():
        if "blocks" in counts:  # raw text cut into blocks: what the run trains on, in tokens
            empty = f"; {counts['dropped_empty']} empty documents dropped" if counts["dropped_empty"] else ""
            console.print(
                f"  {role}: {counts['documents']:,} documents, {counts['tokens']:,} tokens -> "
                f"{counts['blocks']:,} blocks of {counts['block_length']}{empty}"
            )
            continue
        notes = {
            k: v for k, v in counts.items() if k in ("dropped_empty", "truncated", "dropped_unsupervised", "unanswerable") and v
        }
        if notes:
            console.print(
                f"  {role}: {counts.get('rows')} rows; " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in notes.items())
            )
