"""Per-token cost of constrained JSON decoding on CPU: plain greedy decoding against the same decoding under a JSON
schema grammar from xgrammar (llmft.serving.structured, what `llmft serve` uses) and from outlines (outlines-core),
and whether lm-format-enforcer loads beside this transformers. One thread, batch 1, smollm2-135m.

    HF_HUB_OFFLINE=1 python bench/constrained_overhead.py            # prints a markdown table
"""

from __future__ import annotations

import json
import sys
import time

import torch

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 4},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}
PROMPT = "Give a JSON object describing a person with fields name, age and tags."
TOKENS = 48


def _load():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmft.models.builtin import smollm2_path

    path = smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    text = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], tokenize=False, add_generation_prompt=True)
    return model, tokenizer, tokenizer(text, return_tensors="pt", add_special_tokens=False)


def _timed(model, enc, processors, tokens=TOKENS, repeat=3):
    """(seconds per generated token, the generated ids) of greedy decoding with these processors (best of `repeat`)."""
    best, ids = float("inf"), None
    for _ in range(repeat):
        fresh = [p() for p in processors]
        start = time.perf_counter()
        out = model.generate(**enc, max_new_tokens=tokens, min_new_tokens=0, do_sample=False, logits_processor=fresh)
        seconds = time.perf_counter() - start
        ids = out[0, enc["input_ids"].shape[1] :]
        best = min(best, seconds / max(len(ids), 1))
    return best, ids


def _xgrammar(model, tokenizer):
    from llmft.inference.generation import eos_ids
    from llmft.serving.structured import Grammars

    start = time.perf_counter()
    grammars = Grammars(tokenizer, model.config.vocab_size, eos_ids(model, tokenizer))
    constraint = ("json", json.dumps(SCHEMA))
    grammars.compile(constraint)
    return lambda: grammars.processor(constraint), time.perf_counter() - start


def _outlines(model, tokenizer):
    import outlines
    from outlines.backends import get_json_schema_logits_processor

    start = time.perf_counter()
    wrapped = outlines.from_transformers(model, tokenizer)
    made = get_json_schema_logits_processor("outlines_core", wrapped, json.dumps(SCHEMA))
    setup = time.perf_counter() - start

    def fresh():
        made.reset()
        return _OutlinesAdapter(made)

    return fresh, setup


class _OutlinesAdapter:
    """outlines' processors take and return tensors through its own adapter: call it as transformers does."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, input_ids, scores):
        return self.processor(input_ids, scores)


def _lmfe_loads() -> str:
    try:
        import lmformatenforcer.integrations.transformers  # noqa: F401
    except ImportError as ex:
        return f"does not load: {ex}"
    return "loads"


def main() -> None:
    torch.set_num_threads(1)
    model, tokenizer, enc = _load()
    plain, _ = _timed(model, enc, [])
    rows = [("none (plain greedy)", plain, 0.0, "-")]
    for name, build in (("xgrammar 0.2.9", _xgrammar), ("outlines 1.3.3 (outlines-core)", _outlines)):
        try:
            make, setup = build(model, tokenizer)
            per_token, ids = _timed(model, enc, [make])
            text = tokenizer.decode(ids, skip_special_tokens=True)
            valid = _valid(text)
        except Exception as ex:  # noqa: BLE001 - report the library that fails, measure the others
            print(f"{name}: {type(ex).__name__}: {ex}", file=sys.stderr)
            continue
        rows.append((name, per_token, setup, valid))
    print("| constraint | ms/token | overhead ms/token | setup s | output valid |\n|---|---|---|---|---|")
    for name, per_token, setup, valid in rows:
        print(f"| {name} | {per_token * 1e3:.1f} | {(per_token - plain) * 1e3:+.1f} | {setup:.2f} | {valid} |")
    print(f"| lm-format-enforcer 0.11.3 | - | - | - | {_lmfe_loads()} |")


def _valid(text: str) -> str:
    import jsonschema

    try:
        jsonschema.validate(json.loads(text), SCHEMA)
    except Exception as ex:  # noqa: BLE001
        return f"no ({type(ex).__name__})"
    return "yes"


if __name__ == "__main__":
    main()
