"""Estimated vs measured peak memory of a training step: each bundled task on its default model at two batch sizes,
run for 2 optimizer steps under `/usr/bin/time -v` (peak resident set); the estimate is the run plan's
`estimated_peak_gib` (engine/memory.py). Also the default `task=textgen` with the chunked and the plain loss.

    python bench/memory_estimate.py [--out bench/memory_estimate.md]

2-core CPU: about 15 minutes. Each run trains 2 steps and evaluates 2 batches.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = [  # (task, extra overrides)
    ("sentiment", []),
    ("sft", []),
    ("chat", []),
    ("generative-qa", []),
    ("textgen", []),
]
COMMON = ["trainer.max_steps=2", "trainer.limit_eval_batches=2", "trainer.progress=false", "task.data.max_eval_samples=64"]
GENERATIVE = ["task.eval_generate_samples=2", "task.generation.max_new_tokens=4"]


def run(args: list[str], folder: Path) -> tuple[float, float, int]:
    """(estimated GiB, measured peak RSS GiB, micro-batch) of one 2-step run."""
    cmd = [
        "flock",
        "/tmp/llmft-torch.lock",
        "/usr/bin/time",
        "-v",
        sys.executable,
        "-m",
        "llmft",
        "train",
        *args,
        *COMMON,
        f"hydra.run.dir={folder}",
    ]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env={
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            "TOKENIZERS_PARALLELISM": "false",
        },
    )
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    if proc.returncode != 0:
        return float("nan"), peak_kb / 2**20, 0
    plan = json.loads((folder / "run.json").read_text())["plan"]
    return plan["estimated_peak_gib"], peak_kb / 2**20, plan["micro_batch_size"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/memory_estimate.md")
    parser.add_argument("--batches", default="8,32")
    opts = parser.parse_args()
    lines = [
        "| task (default model) | trainer.batch_size | rows per pass | estimated GiB | measured peak RSS GiB | error |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for task, extra in CASES:
            for batch in opts.batches.split(","):
                gen = GENERATIVE if task != "sentiment" else []
                args = [f"task={task}", f"trainer.batch_size={batch}", *gen, *extra]
                est, peak, rows = run(args, Path(tmp) / f"{task}-{batch}")
                lines.append(f"| {task} | {batch} | {rows} | {est:.2f} | {peak:.2f} | {100 * (est - peak) / peak:+.0f}% |")
                print(lines[-1], flush=True)
        for chunked in ("true", "false"):
            args = ["task=textgen", f"task.chunked_loss={chunked}", "trainer.micro_batch_size=4"]
            est, peak, rows = run(args, Path(tmp) / f"textgen-chunked-{chunked}")
            lines.append(
                f"| textgen, task.chunked_loss={chunked}, micro-batch 4 | 32 | {rows} | {est:.2f} | {peak:.2f} | {100 * (est - peak) / peak:+.0f}% |"
            )
            print(lines[-1], flush=True)
    Path(opts.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
