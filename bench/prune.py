"""Pruning on the bundled sentiment data: MiniLM-L6 fine-tuned, then attention heads (or layers) removed by their
importance on the validation rows, then fine-tuned again to recover; test accuracy, parameters and CPU inference speed
of each stage.

    python bench/prune.py                                   # heads, 30%: runs into outputs/bench/prune-sentiment/
    python bench/prune.py --method layers --amount 0.5      # drop 3 of the 6 layers instead
    python bench/prune.py --base-extra trainer.epochs=1     # overrides for the base run only
    python bench/prune.py --prune-extra importance=loss --tag=-loss   # another ranking, in its own folders
    python bench/prune.py --markdown out.md                 # appends the table

The stages (each an llmft command, printed as it starts):
    base:      llmft train task=sentiment model=minilm-l6
    pruned:    llmft prune run=<base> method=heads amount=0.3 output=<pruned>; llmft eval run=<pruned> split=test
    recovered: llmft train task=sentiment model=minilm-l6 model.name_or_path=<pruned>/checkpoints/best trainer.epochs=1
    continued: the same fine-tuning from the unpruned base (the control: what the extra epoch alone gives)
Speed: the checkpoint scores the whole test split in batches of --batch-size (tokenized once beforehand) on one
intra-op thread after a warm-up (bench/distill.py's measurement).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from distill import OUT, llmft, speed

import report


def stages(
    method: str, amount: float, base_extra: list[str], prune_extra: list[str], recover: list[str], tag: str
) -> dict[str, tuple[Path, list[list[str]]]]:
    """Each stage's run folder and the llmft commands that make it."""
    root = OUT / "prune-sentiment"
    base, pruned = root / "base", root / f"{method}-{amount:g}{tag}"
    recovered, continued = root / f"{method}-{amount:g}{tag}-recovered", root / "base-continued"
    train = ["train", "task=sentiment", "model=minilm-l6", "trainer.progress=false"]
    prune = ["prune", f"run={base}", f"method={method}", f"amount={amount}", *prune_extra, f"output={pruned}"]
    return {
        "base": (base, [[*train, *base_extra, f"hydra.run.dir={base}"]]),
        "continued": (
            continued,
            [[*train, f"model.name_or_path={base}/checkpoints/best", *recover, f"hydra.run.dir={continued}"]],
        ),
        "pruned": (pruned, [prune, ["eval", f"run={pruned}", "split=test", f"hydra.run.dir={pruned}/eval-test"]]),
        "recovered": (
            recovered,
            [[*train, f"model.name_or_path={pruned}/checkpoints/best", *recover, f"hydra.run.dir={recovered}"]],
        ),
    }


def accuracy(stage: str, run: Path) -> float:
    result = run / "eval-test" / "eval.json" if stage == "pruned" else run / "eval.json"
    return json.loads(result.read_text())["metrics"]["accuracy"]


def measure(runs: dict[str, tuple[Path, list[list[str]]]], batch_size: int) -> list[dict[str, Any]]:
    rows = []
    for stage, (run, _) in runs.items():
        per_s, params = speed(run, batch_size)
        rows.append({"stage": stage, "run": run, "accuracy": accuracy(stage, run), "samples_per_s": per_s, "parameters": params})
    for row in rows:
        row["speedup"] = row["samples_per_s"] / rows[0]["samples_per_s"]
    return rows


def table(rows: list[dict[str, Any]], method: str, amount: float) -> str:
    lines = ["| stage | parameters | test accuracy | CPU samples/s (1 thread) | vs base |", "|---|---|---|---|---|"]
    for r in rows:
        name = r["stage"] if r["stage"] in ("base", "continued") else f"{r['stage']} ({method} {amount:g})"
        lines.append(
            f"| {name} | {r['parameters'] / 1e6:.2f}M | {r['accuracy']:.4f} | {r['samples_per_s']:.1f} | {r['speedup']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="heads", choices=["heads", "layers"])
    parser.add_argument("--amount", type=float, default=0.3)
    parser.add_argument("--base-extra", nargs="*", default=[], help="overrides for the base run, e.g. trainer.epochs=1")
    parser.add_argument("--prune-extra", nargs="*", default=[], help="overrides for llmft prune, e.g. importance=loss")
    parser.add_argument("--recover", nargs="*", default=["trainer.epochs=1"], help="overrides for the recovery run")
    parser.add_argument("--tag", default="", help="suffix of the pruned run folders (one per variant)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    runs = stages(args.method, args.amount, args.base_extra, args.prune_extra, args.recover, args.tag)
    for run, commands in runs.values():
        if not (run / "checkpoints" / "best").is_dir():
            for command in commands:
                llmft(*command)
    text = table(measure(runs, args.batch_size), args.method, args.amount)
    report.emit(text, args.markdown)


if __name__ == "__main__":
    main()
