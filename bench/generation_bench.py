"""Scenario 3, generation-based eval throughput: greedy continuations of the length-skewed corpus' prompts.

llmft: `llmft.inference.generation.generate` (length-sorted batches, left padding). bare: the same batch size in data order.
trainer: what a Trainer user writes for generation eval, `model.generate` one prompt at a time."""

from __future__ import annotations

import json
import time
from typing import Any

import torch

from scenarios import compose, skewed_corpus

PROMPTS, BATCH, NEW_TOKENS = 128, 16, 32


def run(impl: str, start: float) -> dict[str, Any]:
    from llmft.models import backbone
    from llmft.config import GenerationConfig
    from llmft.inference.generation import generate

    config = compose(["task=sft", "model=tiny-gpt2", "model.max_length=256"])
    source, weights = backbone.resolve(config.model)
    tokenizer = backbone.load_tokenizer(source, config.model)
    from transformers import AutoModelForCausalLM

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = backbone.load_model(AutoModelForCausalLM, weights, tokenizer, config.model).to(device).eval()
    rows = [json.loads(x) for x in (skewed_corpus() / "validation.jsonl").read_text().splitlines()][:PROMPTS]
    prompts = [r["prompt"] for r in rows]
    cfg = GenerationConfig(max_new_tokens=NEW_TOKENS, batch_size=BATCH)
    first = time.perf_counter()
    if impl == "llmft":
        outputs = generate(model, tokenizer, prompts, cfg, device, 256)
        new_tokens = sum(len(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in outputs)
    else:
        new_tokens = _plain(model, tokenizer, prompts, BATCH if impl == "bare" else 1, device)
    elapsed = time.perf_counter() - first
    return {
        "samples_per_s": len(prompts) / elapsed,
        "tokens_per_s": new_tokens / elapsed,
        "time_to_first_step_s": first - start,
        "eval_samples_per_s": len(prompts) / elapsed,
    }


@torch.no_grad()
def _plain(model: Any, tokenizer: Any, prompts: list[str], batch: int, device: torch.device) -> int:
    tokenizer.padding_side = "left"
    new_tokens = 0
    for i in range(0, len(prompts), batch):
        enc = tokenizer(prompts[i : i + batch], return_tensors="pt", padding=True).to(device)
        out = model.generate(**enc, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        for text in tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True):
            new_tokens += len(tokenizer(text.strip(), add_special_tokens=False)["input_ids"])
    return new_tokens
