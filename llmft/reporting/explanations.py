"""How token attributions are shown: coloured text on a terminal (green pushes the explained output up, red down),
an HTML page and a PNG heatmap."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence


def _strength(scores: Sequence[float]) -> list[float]:
    top = max((abs(s) for s in scores), default=0.0) or 1.0
    return [s / top for s in scores]


def print_attributions(items: Sequence[Any]) -> None:
    """Each row's tokens, shaded by attribution (rich drops the colour off a terminal)."""
    from rich.console import Console
    from rich.text import Text

    console = Console()
    for item in items:
        text = Text()
        for token, s in zip(item.tokens, _strength(item.scores)):
            shade = int(255 * (1 - min(abs(s), 1.0)))
            colour = f"rgb({shade},255,{shade})" if s >= 0 else f"rgb(255,{shade},{shade})"
            text.append(token, style=f"black on {colour}")
            text.append(" ")
        console.print(f"{item.target} (score {item.score:.4f}, baseline {item.baseline_score:.4f}):", highlight=False)
        console.print(text)


def write_html(items: Sequence[Any], path: Path) -> None:
    rows = []
    for item in items:
        spans = []
        for token, s, raw in zip(item.tokens, _strength(item.scores), item.scores):
            alpha = min(abs(s), 1.0)
            colour = f"rgba(0,160,0,{alpha:.3f})" if s >= 0 else f"rgba(220,0,0,{alpha:.3f})"
            spans.append(
                f'<span title="{raw:.5f}" style="background:{colour};padding:2px;margin:1px">{html.escape(token)}</span>'
            )
        rows.append(
            f"<p><b>{html.escape(item.target)}</b> score {item.score:.4f} (baseline {item.baseline_score:.4f})<br>"
            + " ".join(spans)
            + "</p>"
        )
    path.write_text(
        "<!doctype html><meta charset='utf-8'><title>llmft explain</title>"
        "<h1>Integrated Gradients token attributions</h1><p>green: raises the explained output; red: lowers it</p>"
        + "\n".join(rows)
        + "\n",
        encoding="utf-8",
    )


def write_heatmap(items: Sequence[Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    width = max(len(i.tokens) for i in items)
    fig, axes = plt.subplots(len(items), 1, figsize=(max(6, 0.6 * width), 1.3 * len(items) + 0.5), squeeze=False)
    for ax, item in zip(axes[:, 0], items):
        values = np.array(_strength(item.scores))[None, :]
        ax.imshow(values, cmap="RdYlGn", vmin=-1, vmax=1, aspect="auto")
        ax.set_xticks(range(len(item.tokens)), item.tokens, rotation=60, fontsize=8)
        ax.set_yticks([])
        ax.set_title(f"{item.target} (score {item.score:.3f})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
