"""Load test of `llmft serve`: the app on a loopback port, N completion requests fired by 1, 8 and 32 concurrent httpx
clients, with dynamic batching on (max_batch_size=8, the default) and off (max_batch_size=1). Reports requests/s and
p50/p99 latency per row.

    python bench/serve_load.py --model smollm2-135m --requests 32 --max-tokens 16 --markdown table.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROMPTS = [
    "The capital of France is",
    "Once upon a time, a small robot",
    "The three primary colours are",
    "To make a cup of tea, first",
    "The quickest way to learn a language is",
    "Water boils at",
    "A good name for a black cat is",
    "The planets of the solar system are",
]


def load_served(model_option: str, max_tokens: int):
    """The model behind `llmft serve model=<option>`, loaded as the CLI loads it (load_predictor)."""
    from omegaconf import OmegaConf

    from llmft.commands.open_run import load_predictor
    from llmft.config import GenerationConfig, ModelConfig
    from llmft.deploy_config import ServeConfig
    from llmft.paths import conf_dir
    from llmft.serving.served_model import ServedModel

    node = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(conf_dir() / "model" / f"{model_option}.yaml"))
    config = ServeConfig(model=OmegaConf.to_object(node))
    task, model, tokenizer, max_length = load_predictor(config)
    return ServedModel(model_option, task, model, tokenizer, max_length, "cpu", GenerationConfig(max_new_tokens=max_tokens))


async def fire(url: str, requests: int, concurrency: int, max_tokens: int) -> tuple[float, list[float]]:
    """(wall seconds, per-request latencies) for `requests` completions sent by `concurrency` clients at once."""
    import httpx

    todo = list(range(requests))
    latencies: list[float] = []

    async def client(http: httpx.AsyncClient) -> None:
        while todo:
            i = todo.pop()
            start = time.perf_counter()
            r = await http.post(f"{url}/v1/completions", json={"prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": max_tokens})
            r.raise_for_status()
            latencies.append(time.perf_counter() - start)

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency + 4)) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        return time.perf_counter() - start, latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="a conf/model option (a pretrained decoder)")
    parser.add_argument("--requests", type=int, default=32, help="requests per row")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--batch-sizes", default="8,1", help="max_batch_size values to compare (1: no batching)")
    parser.add_argument("--window-ms", type=float, default=10.0)
    parser.add_argument("--markdown", type=Path, help="append the table to this file")
    args = parser.parse_args()

    import torch

    from llmft.serving.app import build_app
    from llmft.serving.server import BackgroundServer

    served = load_served(args.model, args.max_tokens)
    rows = []
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        with BackgroundServer(build_app(served, max_batch_size=batch_size, batch_window_ms=args.window_ms)) as url:
            asyncio.run(fire(url, 2, 1, args.max_tokens))  # warm-up
            for concurrency in [int(c) for c in args.concurrency.split(",")]:
                wall, latencies = asyncio.run(fire(url, args.requests, concurrency, args.max_tokens))
                row = (batch_size, concurrency, args.requests / wall, statistics.median(latencies), percentile(latencies, 99))
                print("max_batch_size=%d clients=%d: %.2f req/s, p50 %.2f s, p99 %.2f s" % row, flush=True)
                rows.append(row)
    header = (
        f"{args.model}, {args.requests} requests per row, max_tokens={args.max_tokens}, greedy, batch window "
        f"{args.window_ms:g} ms; {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads\n\n"
        "| max_batch_size | clients | requests/s | p50 latency (s) | p99 latency (s) |\n|---:|---:|---:|---:|---:|\n"
    )
    table = header + "".join("| %d | %d | %.2f | %.2f | %.2f |\n" % r for r in rows)
    print(table)
    if args.markdown:
        with args.markdown.open("a") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
