"""Peak resident memory and tokens/s of `task.data.streaming=true` against the in-memory path (issue 22.3).

Generates JSON Lines corpora of raw text in /tmp (one small enough for the in-memory path to tokenize in minutes,
one of several GB), then runs `llmft train task=textgen model=tiny-gpt2` for a fixed number of steps on each, every
run in its own process under `/usr/bin/time -v` (its maximum resident set size), and prints a markdown table.

    python bench/streaming_memory.py --small-mb 50 --large-gb 2 --steps 60
    python bench/streaming_memory.py --small-mb 50 --large-gb 2 --steps 60 --parquet   # the same corpora as Parquet
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = (
    "the of and to in is was for on that with as by at from his her it an were are which this be or has had not "
    "but their one all new more first after also two been other when who they its into over time city year most "
    "during three river school world war music film team season game album song house court party state"
).split()


def corpus(path: Path, size_bytes: int, seed: int = 0) -> Path:
    """Lines of {"text": ...} of made-up prose until the file holds `size_bytes` (kept when it already does)."""
    if path.is_file() and path.stat().st_size >= size_bytes:
        return path
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        written = 0
        while written < size_bytes:
            lines = []
            for _ in range(1000):
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 200)))
                lines.append(json.dumps({"text": text}) + "\n")
            chunk = "".join(lines)
            handle.write(chunk)
            written += len(chunk)
    return path


def as_parquet(jsonl: Path, rows_per_group: int = 10_000) -> Path:
    """The JSON Lines corpus rewritten as Parquet (row groups of `rows_per_group`), kept when already written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = jsonl.with_suffix(".parquet")
    if path.is_file():
        return path
    with open(jsonl, encoding="utf-8") as lines, pq.ParquetWriter(path, pa.schema([("text", pa.string())])) as writer:
        while chunk := [json.loads(line)["text"] for _, line in zip(range(rows_per_group), lines)]:
            writer.write_table(pa.table({"text": chunk}))
    return path


def run(data: Path, streaming: bool, steps: int, work: Path) -> dict:
    """One `llmft train` in a fresh process: peak RSS (MiB), wall seconds, median tokens/s after the first log."""
    out = Path(tempfile.mkdtemp(dir=work))
    args = [
        "train",
        "task=textgen",
        "model=tiny-gpt2",
        "model.max_length=128",
        f"task.data.path={data}",
        f"task.data.streaming={str(streaming).lower()}",
        "task.data.max_eval_samples=32",
        "trainer.batch_size=8",
        f"trainer.max_steps={steps}",
        "trainer.log_every=10",
        "trainer.progress=false",
        "model.dropout=0.0",
        f"hydra.run.dir={out}/run",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_DATASETS_CACHE": str(out / "cache")}
    started = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-v", sys.executable, "-m", "llmft", *args], env=env, capture_output=True, text=True, cwd=out
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"llmft exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    rss_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    metrics = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    speeds = [m["train/tokens_per_s"] for m in metrics if "train/tokens_per_s" in m][1:]  # the first window pays warm-up
    return {"rss_mib": rss_kib / 1024, "wall_s": wall, "tokens_per_s": statistics.median(speeds) if speeds else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small-mb", type=float, default=50, help="the corpus both paths train on")
    parser.add_argument("--large-gb", type=float, default=2, help="the corpus only streaming trains on")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--work", type=Path, default=Path("/tmp/llmft-streaming-bench"))
    parser.add_argument("--parquet", action="store_true", help="the corpora rewritten as Parquet, both paths on them")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    small = corpus(args.work / "small.jsonl", int(args.small_mb * 2**20))
    large = corpus(args.work / "large.jsonl", int(args.large_gb * 2**30), seed=1)
    if args.parquet:
        small, large = as_parquet(small), as_parquet(large)
    rows = []
    for label, data, streaming in (("in-memory", small, False), ("streamed", small, True), ("streamed", large, True)):
        result = run(data, streaming, args.steps, args.work)
        size = data.stat().st_size / 2**20
        rows.append(
            f"| {label} | {size:,.0f} MiB | {result['rss_mib']:,.0f} | {result['tokens_per_s']:,.0f} | {result['wall_s']:.0f} |"
        )
        print(rows[-1], flush=True)
    print("\n| path | corpus | peak RSS (MiB) | train tokens/s | wall s (incl. tokenizing) |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
