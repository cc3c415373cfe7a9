"""ONNX export of the sentiment run: test accuracy and CPU throughput of PyTorch fp32, ONNX fp32 and ONNX int8.

    python bench/export_speed.py                       # trains `llmft train task=sentiment` into outputs/bench/export-sentiment first
    python bench/export_speed.py --run <run folder>    # reuses a finished sentiment run
    python bench/export_speed.py --markdown out.md     # appends the table

Each engine scores the run's whole test split in batches of --batch-size (padded per batch, tokenized once beforehand:
the numbers are model time), with 1 and 2 intra-op threads; a warm-up pass precedes each timed pass.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import report

ROOT = Path(__file__).resolve().parents[1]


def llmft(*args: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "llmft", *args], check=True, cwd=ROOT, env=env)


def test_batches(run: Path, batch_size: int, role: str = "test") -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    """The run's whole test split (or `role`'s rows), tokenized by the run's task, as (inputs, labels) batches."""
    from llmft.commands.common import checkpoint_dir, load_run_config
    from llmft.data.scored_rows import scored_rows
    from llmft.config import TrainConfig
    from llmft.data import loading as data
    from llmft.export.source import load_source

    saved = load_run_config(run, TrainConfig)
    source = load_source(run, saved, checkpoint_dir(run, "best"))
    dataset, _ = scored_rows(run, saved.task.data, saved.task.data, role)
    features = source.task.prepare({"test": dataset})["test"]
    loader = data.make_loader(features, batch_size, source.task.collator(source.tokenizer), False, 0)
    names = source.input_names()
    return [({n: b[n].numpy().astype("int64") for n in names}, b["labels"].numpy()) for b in loader]


def torch_engine(run: Path, threads: int) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.set_num_threads(threads)
    model = AutoModelForSequenceClassification.from_pretrained(run / "checkpoints" / "best").eval()

    def run_batch(batch: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()

    return run_batch


def onnx_engine(folder: Path, threads: int) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    from llmft.export.onnx import onnx_session

    session = onnx_session(folder / "model.onnx", threads)
    names = [i.name for i in session.get_inputs()]
    return lambda batch: session.run(None, {n: batch[n] for n in names})[0]


def measure(engine: Callable, batches: list[tuple[dict[str, Any], np.ndarray]]) -> tuple[float, float]:
    """(accuracy, samples/s) over all batches, after one warm-up pass."""
    for inputs, _ in batches:
        engine(inputs)
    correct = rows = 0
    start = time.perf_counter()
    for inputs, labels in batches:
        correct += int((engine(inputs).argmax(-1) == labels).sum())
        rows += len(labels)
    return correct / rows, rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--run", type=Path, help="a finished sentiment run (default: train one into outputs/bench/export-sentiment)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    run = args.run or ROOT / "outputs" / "bench" / "export-sentiment"
    if not (run / "checkpoints" / "best").is_dir():
        llmft("train", "task=sentiment", "trainer.progress=false", f"hydra.run.dir={run}")
    for quantize in ("none", "int8"):
        llmft("export", f"run={run}", f"quantize={quantize}")
    batches = test_batches(run, args.batch_size)
    rows = []
    for name, make in [
        ("PyTorch fp32", lambda t: torch_engine(run, t)),
        ("ONNX fp32", lambda t: onnx_engine(run / "export" / "onnx", t)),
        ("ONNX int8", lambda t: onnx_engine(run / "export" / "onnx-int8", t)),
    ]:
        results = {threads: measure(make(threads), batches) for threads in (1, 2)}
        rows.append((name, results[1][0], results[1][1], results[2][1]))
    base = {1: rows[0][2], 2: rows[0][3]}
    lines = [
        f"Test split: {sum(len(labels) for _, labels in batches)} rows, batch {args.batch_size}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "",
        "| engine | test accuracy | samples/s, 1 thread | samples/s, 2 threads | speed-up vs PyTorch (1 / 2 threads) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, accuracy, one, two in rows:
        lines.append(f"| {name} | {accuracy:.4f} | {one:.1f} | {two:.1f} | {one / base[1]:.2f}x / {two / base[2]:.2f}x |")
    for folder in ("onnx", "onnx-int8"):
        record = json.loads((run / "export" / folder / "export.json").read_text())
        lines.append(
            f"\n{folder}: export.json agreement {record['agreement']} on {record['test_rows']} rows, "
            f"max |logit diff| {record['max_abs_logit_diff']:.3g}; model.onnx "
            f"{(run / 'export' / folder / 'model.onnx').stat().st_size / 2**20:.1f} MiB"
        )
    text = "\n".join(lines)
    report.emit(text, args.markdown)


if __name__ == "__main__":
    main()
