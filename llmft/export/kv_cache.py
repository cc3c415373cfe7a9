"""A decoder's ONNX graph with a KV cache, in optimum's naming: `input_ids`, `attention_mask` (past + new tokens),
`position_ids`, `past_key_values.<i>.key|value` in; `logits`, `present.<i>.key|value` out. The first step feeds
zero-length past tensors (batch, kv heads, 0, head dim); each later step feeds the previous step's presents and only
the new tokens, as optimum's ORTModelForCausalLM and onnxruntime-genai do. Every axis but heads and head dim is
dynamic (torch.export infers that the mask's length is past + new)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CacheShape:
    """What the cache of one model looks like: its layers, and the heads and size of each key/value."""

    layers: int
    heads: int
    head_dim: int

    def past_names(self) -> list[str]:
        return [f"past_key_values.{i}.{kv}" for i in range(self.layers) for kv in ("key", "value")]

    def present_names(self) -> list[str]:
        return [f"present.{i}.{kv}" for i in range(self.layers) for kv in ("key", "value")]


def cache_shape(model: Any) -> CacheShape:
    """Read the cache's shape off one forward pass (no architecture table: whatever the model builds)."""
    import torch

    with torch.inference_mode():
        cache = model(input_ids=torch.ones((1, 2), dtype=torch.long), use_cache=True).past_key_values
    keys = [layer.keys for layer in cache.layers]
    return CacheShape(len(keys), int(keys[0].shape[1]), int(keys[0].shape[3]))


def cache_module(model: Any, shape: CacheShape) -> Any:
    """input_ids, attention_mask, position_ids, *past -> logits, *present (an nn.Module torch.export traces)."""
    import torch
    from transformers.cache_utils import DynamicCache

    class WithCache(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, position_ids: Any, *past: Any) -> tuple[Any, ...]:
            cache = DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(shape.layers)])
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
            )
            presents = [t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)]
            return (out.logits, *presents)

    return WithCache().eval()


def cache_example(shape: CacheShape) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(example inputs, dynamic shapes): 3 new tokens after 5 cached ones, batch 2 (distinct sizes, none 0 or 1)."""
    import torch

    batch, new, past = 2, 3, 5
    dynamic = torch.export.Dim.DYNAMIC
    example = (
        torch.full((batch, new), 5, dtype=torch.long),
        torch.ones((batch, past + new), dtype=torch.long),
        torch.arange(past, past + new).expand(batch, new).contiguous(),
        *(torch.zeros((batch, shape.heads, past, shape.head_dim)) for _ in range(2 * shape.layers)),
    )
    tokens = {0: dynamic, 1: dynamic}
    shapes = (tokens, tokens, tokens, tuple({0: dynamic, 2: dynamic} for _ in range(2 * shape.layers)))
    return example, shapes
