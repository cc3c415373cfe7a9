"""`llmft data`'s report from a task's prepared features, whatever the family: the token sequences of a row (every
column of token-id lists), which tokens are supervised (a per-token `labels` list), counts, a token-length histogram,
whether EOS ends every supervised span, the label distribution of one-label-per-row data; shown on the console
(supervised tokens highlighted on a terminal, [[bracketed]] off one) and written as JSON and HTML."""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from rich.text import Text

IGNORE = -100
OPEN, CLOSE = "[[", "]]"  # supervised text off a terminal


def token_columns(row: dict[str, Any]) -> list[str]:
    """Columns holding token ids: lists of ints, or lists of such lists (one per choice)."""

    def ids(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and (all(isinstance(x, int) for x in v) or all(ids(x) for x in v))

    return [k for k, v in row.items() if (k == "input_ids" or k.endswith("_ids")) and k != "position_ids" and ids(v)]


def token_labels(row: dict[str, Any], column: str) -> Optional[list[int]]:
    """Per-token labels of a token column: `labels` of the same length (-100: not scored)."""
    labels = row.get("labels")
    if column in row and isinstance(labels, list) and labels and isinstance(labels[0], int) and len(labels) == len(row[column]):
        return labels
    return None


def predicts_tokens(row: dict[str, Any]) -> bool:
    """The labels are the text's own next tokens (a language model) or a target text (seq2seq), not tags."""
    labels = row.get("labels")
    if not isinstance(labels, list) or not labels or not isinstance(labels[0], int):
        return False
    aligned = token_labels(row, "input_ids")
    return aligned is None or all(label == token for label, token in zip(aligned, row["input_ids"]) if label != IGNORE)


def _runs(ids: list[int], mask: list[bool]) -> list[tuple[bool, list[int]]]:
    runs: list[tuple[bool, list[int]]] = []
    for token, on in zip(ids, mask):
        if runs and runs[-1][0] == on:
            runs[-1][1].append(token)
        else:
            runs.append((on, [token]))
    return runs


Pieces = list[tuple[bool, str]]  # (supervised?, text) runs of one token sequence


def render(tokenizer: Any, ids: list[int], mask: Optional[list[bool]]) -> Pieces:
    """The decoded tokens in runs of supervised / not supervised (special tokens shown)."""
    return [
        (on, tokenizer.decode(run, skip_special_tokens=False, clean_up_tokenization_spaces=False))
        for on, run in _runs(ids, mask or [False] * len(ids))
    ]


def styled(pieces: Pieces) -> Text:
    """For a terminal: supervised runs highlighted, the rest dim."""
    text = Text()
    for on, piece in pieces:
        text.append(piece, style="bold black on green" if on else "dim")
    return text


def bracketed(pieces: Pieces) -> str:
    """Off a terminal: supervised runs between [[ and ]]."""
    return "".join(f"{OPEN}{piece}{CLOSE}" if on else piece for on, piece in pieces)


def row_views(tokenizer: Any, row: dict[str, Any], id2label: dict[int, str]) -> list[tuple[str, Pieces]]:
    """(name, rendered text) for each token sequence of one feature row, then its scalar label."""
    views = []
    for column in token_columns(row):
        value = row[column]
        sequences = value if isinstance(value[0], list) else [value]
        labels = token_labels(row, column)
        for k, ids in enumerate(sequences):
            mask = [label != IGNORE for label in labels] if labels is not None else None
            views.append((column if len(sequences) == 1 else f"{column}[{k}]", render(tokenizer, ids, mask)))
    labels = row.get("labels", row.get("label"))
    if isinstance(labels, list) and labels and token_labels(row, "input_ids" if "input_ids" in row else "") is None:
        target = [t for t in labels if t != IGNORE]  # a target sequence of its own (seq2seq)
        views.append(("target", render(tokenizer, target, [True] * len(target))))
    elif isinstance(labels, (int, float)) and not isinstance(labels, bool):
        views.append(("label", [(False, str(id2label.get(labels, labels)) if isinstance(labels, int) else str(labels))]))
    return views


def supervised_spans(labels: list[int]) -> list[list[int]]:
    spans, current = [], []
    for label in labels:
        if label != IGNORE:
            current.append(label)
        elif current:
            spans.append(current)
            current = []
    return spans + ([current] if current else [])


def ends_with_eos(span: list[int], eos: Optional[int], tokenizer: Any) -> bool:
    """EOS is the span's last token, or the last but a whitespace token a chat template writes after it."""
    if eos is None or not span:
        return False
    if span[-1] == eos:
        return True
    return len(span) > 1 and span[-2] == eos and not tokenizer.decode(span[-1:]).strip()


def histogram(lengths: list[int], bins: int = 10) -> dict[str, list[int]]:
    if not lengths:
        return {"edges": [], "counts": []}
    low, high = min(lengths), max(lengths)
    width = max(1, -(-(high - low + 1) // bins))
    edges = [low + i * width for i in range(bins + 1)]
    counts = [0] * bins
    for n in lengths:
        counts[min((n - low) // width, bins - 1)] += 1
    while counts and counts[-1] == 0:
        counts.pop()
        edges.pop()
    return {"edges": edges, "counts": counts}


def split_stats(ds: Any, tokenizer: Any, id2label: dict[int, str]) -> dict[str, Any]:
    """Rows, token lengths and their histogram, rows with no supervised token, EOS at supervised ends, labels."""
    lengths, no_supervised, spans, with_eos, labels = [], 0, 0, 0, Counter()
    per_token = False
    for row in ds:
        columns = token_columns(row)
        if columns:
            value = row[columns[0]]
            lengths.append(max(len(v) for v in value) if isinstance(value[0], list) else len(value))
        target = row.get("labels", row.get("label"))
        if isinstance(target, list) and predicts_tokens(row):
            per_token = True
            found = supervised_spans(target)
            no_supervised += not found
            spans += len(found)
            with_eos += sum(ends_with_eos(s, tokenizer.eos_token_id, tokenizer) for s in found)
        elif isinstance(target, list):  # a tag per token (token classification): the tag distribution
            labels.update(str(id2label.get(t, t)) for t in target if t != IGNORE)
        elif isinstance(target, int) and not isinstance(target, bool):
            labels[str(id2label.get(target, target))] += 1
    out: dict[str, Any] = {"rows": len(ds), "token_lengths": _summary(lengths), "histogram": histogram(lengths)}
    if per_token:
        out.update(
            no_supervised_rows=no_supervised,
            supervised_spans=spans,
            spans_ending_in_eos=with_eos,
            eos_at_every_supervised_end=spans > 0 and with_eos == spans,
        )
    if labels:
        out["labels"] = dict(sorted(labels.items()))
    return out


def _summary(lengths: list[int]) -> dict[str, Any]:
    if not lengths:
        return {}
    ordered = sorted(lengths)
    return {
        "total": sum(ordered),
        "min": ordered[0],
        "mean": round(sum(ordered) / len(ordered), 1),
        "max": ordered[-1],
        "p50": ordered[len(ordered) // 2],
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
    }


def write(report: dict[str, Any], folder: Path) -> list[Path]:
    """report.json and report.html (with each split's token-length histogram as an inline SVG)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (folder / "report.html").write_text(_html(report))
    return [folder / "report.json", folder / "report.html"]


def _svg(hist: dict[str, list[int]]) -> str:
    counts, edges = hist["counts"], hist["edges"]
    if not counts:
        return "<p>no token sequences</p>"
    top, bar = max(counts), 36
    rects = "".join(
        f'<rect x="{i * (bar + 4)}" y="{160 - 150 * c / top:.1f}" width="{bar}" height="{150 * c / top:.1f}" fill="#4a7">'
        f"<title>{edges[i]}-{edges[i + 1] - 1} tokens: {c} rows</title></rect>"
        f'<text x="{i * (bar + 4)}" y="175" font-size="9">{edges[i]}</text>'
        for i, c in enumerate(counts)
    )
    return f'<svg class="histogram" width="{len(counts) * (bar + 4)}" height="180">{rects}</svg>'


def _html(report: dict[str, Any]) -> str:
    parts = [f"<h1>llmft data: {html.escape(str(report.get('task')))}</h1>"]
    for role, stats in report["splits"].items():
        parts.append(f"<h2>{role}</h2>{_svg(stats['histogram'])}<pre>{html.escape(json.dumps(stats, indent=1))}</pre>")
    parts.append(f"<h2>quality</h2><pre>{html.escape(json.dumps(report['quality'], indent=1))}</pre>")
    rows = "".join(f"<li><pre>{html.escape(r['text'])}</pre></li>" for r in report["rows"])
    parts.append(f"<h2>rows ({OPEN}supervised{CLOSE})</h2><ol>{rows}</ol>")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>llmft data</title></head><body>{''.join(parts)}</body></html>\n"
    )
