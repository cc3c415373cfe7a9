"""Load test of `llmft serve`: the real command (`llmft serve model=... max_batch_size=N`) in a subprocess on a loopback
port, fed greedy `/v1/completions` requests by 1, 8 and 32 concurrent httpx clients, plain and streamed. Reports per
row the p50/p95 time to first token (a streamed request: its first chunk with text; a plain one: its whole response),
p50 latency to the last byte and the aggregate output tokens/s. max_batch_size=1 runs every request alone: for streamed
requests that is how `llmft serve` ran them before they joined batches.

    python bench/serve_load.py --model smollm2-135m --max-tokens 16 --configs 8:plain,8:stream,1:plain,1:stream
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import report

ROOT = Path(__file__).resolve().parents[1]
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


def start_server(model: str, max_batch_size: int, window_ms: float, max_tokens: int) -> tuple[subprocess.Popen, str]:
    """`llmft serve` in a subprocess, once /health answers: (the process, its base URL)."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "llmft", "serve", f"model={model}", f"port={port}", f"max_batch_size={max_batch_size}"]
    command += [f"batch_window_ms={window_ms:g}", f"generation.max_new_tokens={max_tokens}"]
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", prefix="serve_load-")
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    log.seek(0)
    raise RuntimeError(f"`{' '.join(command)}` did not start:\n{log.read()[-3000:]}")


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)  # Ctrl-C: uvicorn's graceful stop
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


async def one_request(http, url: str, prompt: str, max_tokens: int, stream: bool) -> tuple[float, float, int]:
    """(seconds to the first token, seconds to the end, completion tokens) of one greedy completion."""
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    start = time.perf_counter()
    if not stream:
        r = await http.post(f"{url}/v1/completions", json=body)
        r.raise_for_status()
        done = time.perf_counter() - start
        return done, done, r.json()["usage"]["completion_tokens"]
    first, tokens = None, 0
    body.update(stream=True, stream_options={"include_usage": True})
    async with http.stream("POST", f"{url}/v1/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if first is None and chunk["choices"] and chunk["choices"][0]["text"]:
                first = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    done = time.perf_counter() - start
    return (first if first is not None else done), done, tokens


async def fire(url: str, requests: int, clients: int, max_tokens: int, stream: bool) -> tuple[float, list]:
    """(wall seconds, one (ttft, latency, tokens) per request) for `requests` sent by `clients` clients at once."""
    import httpx

    todo, results = list(range(requests)), []

    async def client(http: httpx.AsyncClient) -> None:
        while todo:
            i = todo.pop()
            results.append(await one_request(http, url, PROMPTS[i % len(PROMPTS)], max_tokens, stream))

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients + 4)) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return time.perf_counter() - start, results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def measure(args: argparse.Namespace, batch_size: int, modes: list[str]) -> list[tuple]:
    """The rows of one server (one max_batch_size): each mode at each client count."""
    process, url = start_server(args.model, batch_size, args.window_ms, args.max_tokens)
    rows = []
    try:
        asyncio.run(fire(url, 2, 1, args.max_tokens, False))  # warm-up
        for mode in modes:
            for clients in [int(c) for c in args.clients.split(",")]:
                requests = max(clients, args.min_requests)
                wall, results = asyncio.run(fire(url, requests, clients, args.max_tokens, mode == "stream"))
                ttft = [r[0] for r in results]
                row = (batch_size, mode, clients, requests, statistics.median(ttft), percentile(ttft, 95))
                row += (statistics.median(r[1] for r in results), sum(r[2] for r in results) / wall)
                print(
                    "max_batch_size=%d %s clients=%d requests=%d: ttft p50 %.2f p95 %.2f s, latency p50 %.2f s, %.1f tok/s" % row
                )
                rows.append(row)
    finally:
        stop_server(process)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="a conf/model option (a pretrained decoder)")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--min-requests", type=int, default=8, help="requests per row: the clients, at least this many")
    parser.add_argument("--configs", default="8:plain,8:stream,1:plain,1:stream", help="max_batch_size:plain|stream, ...")
    parser.add_argument("--window-ms", type=float, default=10.0)
    parser.add_argument("--markdown", type=Path, help="append the table to this file")
    args = parser.parse_args()
    by_size: dict[int, list[str]] = {}
    for config in args.configs.split(","):
        size, mode = config.split(":")
        by_size.setdefault(int(size), []).append(mode)
    rows = [row for size, modes in by_size.items() for row in measure(args, size, modes)]
    header = (
        f"{args.model}, greedy /v1/completions, max_tokens={args.max_tokens}, batch window {args.window_ms:g} ms; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n\n"
        "| max_batch_size | requests | clients | n | p50 TTFT (s) | p95 TTFT (s) | p50 latency (s) | output tokens/s |\n"
        "|---:|---|---:|---:|---:|---:|---:|---:|\n"
    )
    table = header + "".join("| %d | %s | %d | %d | %.2f | %.2f | %.2f | %.1f |\n" % r for r in rows)
    report.emit(table, args.markdown)


if __name__ == "__main__":
    main()
