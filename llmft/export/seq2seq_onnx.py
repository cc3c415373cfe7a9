"""An encoder-decoder (seq2seq) run as ONNX in optimum's three-graph layout: `encoder_model.onnx` (input_ids,
attention_mask -> last_hidden_state), `decoder_model.onnx` (input_ids, encoder_attention_mask, encoder_hidden_states ->
logits, present.<i>.decoder|encoder.key|value: the first step, which also computes the cross-attention cache) and
`decoder_with_past_model.onnx` (input_ids, encoder_attention_mask, past_key_values.<i>.decoder|encoder.key|value ->
logits, present.<i>.decoder.key|value: every later step, fed only the new token). Traced with torch's dynamo exporter,
as llmft.export.onnx traces the other heads. Verified by decoding: greedy through the graphs gives `model.generate`'s
greedy tokens on the run's test rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from llmft.export.kv_cache import CacheShape
from llmft.export.onnx import trace
from llmft.export.verify import GREEDY_STEPS, Runner

ENCODER_FILE = "encoder_model.onnx"
DECODER_FILE = "decoder_model.onnx"
DECODER_WITH_PAST_FILE = "decoder_with_past_model.onnx"
SEQ2SEQ_FILES = (ENCODER_FILE, DECODER_FILE, DECODER_WITH_PAST_FILE)


def seq2seq_names(layers: int, prefix: str, parts: tuple[str, ...]) -> list[str]:
    """optimum's cache names: <prefix>.<i>.<decoder|encoder>.<key|value>, layer by layer."""
    return [f"{prefix}.{i}.{part}.{kv}" for i in range(layers) for part in parts for kv in ("key", "value")]


def _cache_shape(model: Any) -> CacheShape:
    """The decoder's layers, heads and head size, read off one forward pass."""
    import torch

    with torch.inference_mode():
        ids = torch.ones((1, 2), dtype=torch.long)
        cache = model(input_ids=ids, decoder_input_ids=ids, use_cache=True).cache
    keys = [layer.keys for layer in cache.self_attention_cache.layers]
    return CacheShape(len(keys), int(keys[0].shape[1]), int(keys[0].shape[3]))


def _modules(model: Any, shape: CacheShape) -> tuple[Any, Any, Any]:
    """(encoder, first decoder step, decoder step with past) as nn.Modules torch.export traces."""
    import torch
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    def presents(cache: Any, cross: bool) -> list[Any]:
        out = []
        for own, other in zip(cache.self_attention_cache.layers, cache.cross_attention_cache.layers):
            out += [own.keys, own.values, *((other.keys, other.values) if cross else ())]
        return out

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def step(model: Any, states: Any, mask: Any, input_ids: Any, cache: Any, cross: bool) -> tuple[Any, ...]:
        """One decoder pass over the cache: the logits, then the present keys and values (with the cross-attention
        ones on the first step)."""
        out = model(encoder_outputs=(states,), attention_mask=mask, decoder_input_ids=input_ids, cache=cache, use_cache=True)
        return (out.logits, *presents(out.cache, cross=cross))

    class Decoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, encoder_attention_mask: Any, encoder_hidden_states: Any) -> tuple[Any, ...]:
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            return step(self.model, encoder_hidden_states, encoder_attention_mask, input_ids, cache, cross=True)

    class DecoderWithPast(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, encoder_attention_mask: Any, *past: Any) -> tuple[Any, ...]:
            cache = EncoderDecoderCache([tuple(past[4 * i : 4 * i + 4]) for i in range(shape.layers)])
            batch, source = encoder_attention_mask.shape
            states = past[0].new_zeros((batch, source, self.model.config.d_model))  # unread: the cross cache holds K/V
            return step(self.model, states, encoder_attention_mask, input_ids, cache, cross=False)

    return Encoder().eval(), Decoder().eval(), DecoderWithPast().eval()


def _examples(model: Any, shape: CacheShape) -> list[tuple[tuple, Any, list[str], list[str]]]:
    """(example, dynamic shapes, input names, output names) of the three graphs: batch 2, 7 source tokens, 3 target
    tokens (cached ones, for the step with past), 4 new ones (distinct sizes, none 0 or 1)."""
    import torch

    batch, source, target, dim = 2, 7, 3, model.config.d_model
    dyn = torch.export.Dim.DYNAMIC
    tokens = {0: dyn, 1: dyn}
    mask = torch.ones((batch, source), dtype=torch.long)
    states = torch.zeros((batch, source, dim))
    new = torch.full((batch, 4), 5, dtype=torch.long)  # 4 new tokens: a size-1 axis would be specialized to 1
    kv = (batch, shape.heads, None, shape.head_dim)
    past = tuple(
        torch.zeros(kv[:2] + (target if part == "decoder" else source,) + kv[3:])
        for _ in range(shape.layers)
        for part in ("decoder", "encoder")
        for _ in ("key", "value")
    )
    both, own = ("decoder", "encoder"), ("decoder",)
    return [
        (
            (torch.full((batch, source), 5, dtype=torch.long), mask),
            (tokens, tokens),
            ["input_ids", "attention_mask"],
            ["last_hidden_state"],
        ),
        (
            (torch.full((batch, target), 5, dtype=torch.long), mask, states),
            (tokens, tokens, {0: dyn, 1: dyn}),
            ["input_ids", "encoder_attention_mask", "encoder_hidden_states"],
            ["logits", *seq2seq_names(shape.layers, "present", both)],
        ),
        (
            (new, mask, *past),
            (tokens, tokens, tuple({0: dyn, 2: dyn} for _ in past)),
            ["input_ids", "encoder_attention_mask", *seq2seq_names(shape.layers, "past_key_values", both)],
            ["logits", *seq2seq_names(shape.layers, "present", own)],
        ),
    ]


def export_seq2seq(model: Any, tokenizer: Any, out: Path, opset: int) -> Path:
    """Write the three graphs (+ config.json, generation_config.json, tokenizer files) in `out`; returns the encoder's
    path."""
    shape = _cache_shape(model)
    attention = model.config._attn_implementation
    model.set_attn_implementation("eager")  # T5's SDPA path reshapes a transposed output the exporter cannot view
    try:
        for module, graph, name in zip(_modules(model, shape), _examples(model, shape), SEQ2SEQ_FILES):
            trace(module, *graph, opset, f"{type(model).__name__} ({name})").save(str(out / name))
    finally:
        model.set_attn_implementation(attention)
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out / ENCODER_FILE


def seq2seq_runner(folder: Path, session: Callable[[Path], Any]) -> Runner:
    """The three graphs as a Runner: greedy decoding as `generate` does it (the decoder start token first, a finished
    row fed the pad token), the cross-attention cache computed once; [answer tokens, each step's logits]."""
    from transformers import AutoConfig, GenerationConfig

    encoder, first, step = (session(folder / name) for name in SEQ2SEQ_FILES)
    config, generation = AutoConfig.from_pretrained(folder), GenerationConfig.from_pretrained(folder)
    ends = generation.eos_token_id if isinstance(generation.eos_token_id, list) else [generation.eos_token_id]
    past_names = [i.name for i in step.get_inputs() if i.name.startswith("past_key_values.")]
    own_names = [n for n in past_names if ".decoder." in n]

    def run(batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        states = encoder.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        start = np.full((len(ids), 1), config.decoder_start_token_id, dtype=np.int64)
        logits, *presents = first.run(None, {"input_ids": start, "encoder_attention_mask": mask, "encoder_hidden_states": states})
        past = dict(zip(past_names, presents))
        tokens, steps, done = [], [], np.zeros(len(ids), dtype=bool)
        for _ in range(GREEDY_STEPS):
            steps.append(logits[:, -1])
            chosen = np.where(done, config.pad_token_id, logits[:, -1].argmax(-1)).astype(np.int64)
            tokens.append(chosen)
            done |= np.isin(chosen, ends)
            if done.all():
                break
            logits, *own = step.run(None, {"input_ids": chosen[:, None], "encoder_attention_mask": mask, **past})
            past.update(zip(own_names, own))
        return [np.stack(tokens, 1), np.stack(steps, 1)]

    return run
