"""`llmft export format=gguf` read by llama.cpp itself (llama-cpp-python), not only by transformers' GGUF reader.

A SmolLM2-135M SFT run (a few steps on the bundled data) is exported to GGUF (f16 and q8_0); llama.cpp loads each file,
scores a few prompts and decodes greedily; the script reports the largest difference of the next-token logits from the
PyTorch checkpoint's, whether the greedy tokens agree, and llama.cpp's decode speed on one thread and on all cores.

    pip install llama-cpp-python          # builds llama.cpp from source: minutes (time it: see BENCHMARKS.md)
    python bench/gguf_llamacpp.py [--out /tmp/gguf_llamacpp] [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PROMPTS = ["The capital of France is", "def add(a, b):\n    return", "Once upon a time, there was a", "2 + 3 ="]


def llmft(args: list[str], cwd: Path) -> None:
    cwd.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "llmft", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"llmft {' '.join(args)} failed:\n{proc.stderr[-3000:]}")


def sft_run(out: Path, steps: int) -> Path:
    runs = sorted(p.parent for p in (out / "outputs").rglob("run.json")) if (out / "outputs").exists() else []
    if not runs:
        llmft(
            [
                "train",
                "recipe=sft-smollm2",
                f"trainer.max_steps={steps}",
                "trainer.eval_every=0",
                "trainer.progress=false",
                "task.eval_generate_samples=0",
                "task.select_metric=loss",
                "task.data.max_eval_samples=8",
            ],
            out,
        )
        runs = sorted(p.parent for p in (out / "outputs").rglob("run.json"))
    return runs[-1]


def reference(run: Path) -> tuple[list[list[int]], list[list[float]], list[list[int]]]:
    """Per prompt: the token ids, the checkpoint's next-token logits, its 16 greedy tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = run / "checkpoints" / "best"
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder).eval()
    ids, logits, greedy = [], [], []
    with torch.inference_mode():
        for p in PROMPTS:
            x = tok(p, return_tensors="pt")["input_ids"]
            ids.append(x[0].tolist())
            logits.append(model(x).logits[0, -1].tolist())
            out = model.generate(x, max_new_tokens=16, do_sample=False, pad_token_id=tok.eos_token_id)
            greedy.append(out[0, x.shape[1] :].tolist())
    return ids, logits, greedy


def llama_cpp_side(path: Path, ids: list[list[int]], threads: int) -> tuple[list[list[float]], list[list[int]], float]:
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=256, n_threads=threads, logits_all=True, verbose=False)
    logits, greedy, tokens, seconds = [], [], 0, 0.0
    for x in ids:
        llm.reset()
        llm.eval(x)
        logits.append(np.asarray(llm.scores[len(x) - 1]).tolist())
        start, out = time.perf_counter(), []
        for t in llm.generate(x, temp=0.0, top_k=1, reset=True):
            out.append(t)
            if len(out) == 16:
                break
        seconds += time.perf_counter() - start
        tokens += len(out)
        greedy.append(out)
    return logits, greedy, tokens / seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("/tmp/gguf_llamacpp"))
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    import numpy as np

    run = sft_run(args.out, args.steps)
    ids, want, want_greedy = reference(run)
    rows = []
    for quantize, folder in (("none", "gguf"), ("int8", "gguf-int8")):
        llmft(["export", f"run={run}", "format=gguf", f"quantize={quantize}"], args.out)
        path = run / "export" / folder / "model.gguf"
        for threads in (1, os.cpu_count() or 1):
            got, greedy, speed = llama_cpp_side(path, ids, threads)
            diff = max(float(np.abs(np.asarray(g) - np.asarray(w)).max()) for g, w in zip(got, want))
            same_next = sum(int(np.argmax(g) == np.argmax(w)) for g, w in zip(got, want))
            same_greedy = sum(g == w for g, w in zip(greedy, want_greedy))
            rows.append(
                {
                    "file": f"{folder}/model.gguf",
                    "MiB": round(path.stat().st_size / 2**20, 1),
                    "threads": threads,
                    "max_abs_logit_diff": round(diff, 3),
                    "same_next_token": f"{same_next}/{len(ids)}",
                    "same_16_greedy_tokens": f"{same_greedy}/{len(ids)}",
                    "decode_tokens_per_s": round(speed, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| file | MiB | threads | max abs logit diff | same next token | same 16 greedy tokens | decode tok/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['file']} | {r['MiB']} | {r['threads']} | {r['max_abs_logit_diff']} | {r['same_next_token']} | "
            f"{r['same_16_greedy_tokens']} | {r['decode_tokens_per_s']} |"
        )


if __name__ == "__main__":
    main()
