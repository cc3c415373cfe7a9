"""Decoding speed of a decoder run's ONNX export (its KV-cache graph, what `llmft serve backend=onnx` runs) against the
PyTorch checkpoint (what `backend=torch` runs), CPU, greedy, batch 1.

    python bench/onnx_decode.py                       # trains a 2-step smollm2-135m SFT run and exports it first
    python bench/onnx_decode.py --run <run folder>    # a decoder run with <run>/export/onnx already written

Both engines decode the same prompts through transformers' `generate` (the ONNX graph through
llmft.inference.onnx_lm.OnnxCausalLM), exactly --new-tokens tokens each (min = max), with 1 and 2 intra-op threads;
a warm-up prompt precedes each timed pass. Prints tokens/s and whether the two engines chose the same tokens.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [
    "Write a short note to a friend about the weather this weekend.",
    "Explain in two sentences why the sky is blue.",
    "List three fruits and say what colour each one is.",
]


def llmft(*args: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "llmft", *args], check=True, cwd=ROOT, env=env)


def prepared_run() -> Path:
    run = ROOT / "outputs" / "bench" / "onnx-decode-smollm2"
    if not (run / "export" / "onnx" / "export.json").is_file():
        llmft(
            "train", "task=sft", "model=smollm2-135m", "trainer.max_steps=2", "trainer.batch_size=4",
            "task.data.max_train_samples=64", "task.data.max_eval_samples=8", "trainer.progress=false",
            "task.eval_generate_samples=0", "task.select_metric=loss", f"hydra.run.dir={run}",
        )  # fmt: skip
        llmft("export", f"run={run}", "verify_rows=8")
    return run


def engines(run: Path, threads: int) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    from llmft.export.onnx import onnx_session
    from llmft.inference.onnx_lm import OnnxCausalLM

    torch.set_num_threads(threads)
    out = run / "export" / "onnx"
    generation = GenerationConfig.from_pretrained(out) if (out / "generation_config.json").is_file() else None
    return {
        "pytorch": AutoModelForCausalLM.from_pretrained(run / "checkpoints" / "best").eval(),
        "onnx": OnnxCausalLM(onnx_session(out / "model.onnx", threads), AutoConfig.from_pretrained(out), generation),
    }


def timed(model, tokenizer, new_tokens: int) -> tuple[float, list[list[int]]]:
    """(tokens/s over the prompts, the tokens chosen) after one warm-up prompt."""
    import torch

    def one(prompt: str) -> list[int]:
        enc = tokenizer(prompt, return_tensors="pt")
        with torch.inference_mode():
            ids = model.generate(
                **enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            )  # fmt: skip
        return ids[0, enc["input_ids"].shape[1] :].tolist()

    one(PROMPTS[0])
    start = time.perf_counter()
    chosen = [one(p) for p in PROMPTS]
    return sum(map(len, chosen)) / (time.perf_counter() - start), chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    run = args.run or prepared_run()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run / "export" / "onnx")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; {run}; {args.new_tokens} new tokens")
    print("| engine | threads | tokens/s | same tokens as PyTorch |\n|---|---|---|---|")
    for threads in (1, 2):
        results = {name: timed(model, tokenizer, args.new_tokens) for name, model in engines(run, threads).items()}
        for name, (speed, chosen) in results.items():
            same = sum(a == b for a, b in zip(chosen, results["pytorch"][1]))
            print(f"| {name} | {threads} | {speed:.1f} | {same}/{len(chosen)} prompts |")


if __name__ == "__main__":
    main()
