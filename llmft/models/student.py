"""A shallower student built from a teacher's own layers (DistilBERT's initialisation): `model.keep_layers=[0,2,4]`
keeps those blocks of every layer stack (BERT-like encoders, Llama-like and GPT-2 decoders, both T5 stacks), or
`model.num_layers=3` keeps that many, evenly spaced from the first. Embeddings, final norm and head stay as they are;
the config's layer count is updated and each kept block renumbered, so the saved checkpoint loads in plain
transformers."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch

from llmft.errors import UserError

DECODER_COUNTS = ("num_decoder_layers", "decoder_layers")  # T5, BART: the decoder stack's own count
PER_LAYER_LISTS = ("layer_types",)  # config lists with one entry per layer (sliding/full attention)


def spaced_layers(total: int, keep: int) -> list[int]:
    """`keep` of `total` layers, evenly spaced from the first: 3 of 6 -> [0, 2, 4], 3 of 12 -> [0, 4, 8]."""
    return [round(i * total / keep) for i in range(keep)]


def layer_stacks(model: torch.nn.Module) -> list[tuple[str, torch.nn.ModuleList]]:
    """The backbone's stacks of transformer blocks: the outermost ModuleLists of one block class (encoder.layer, h,
    layers; T5's encoder.block and decoder.block), by name."""
    found: list[tuple[str, torch.nn.ModuleList]] = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.ModuleList) or len(module) == 0:
            continue
        if any(name.startswith(outer + ".") for outer, _ in found):
            continue  # a list inside a block (T5's block[i].layer)
        if len({type(m) for m in module}) == 1 and isinstance(module[0], torch.nn.Module):
            found.append((name, module))
    return found


def _count_field(config: Any, stack_name: str) -> str:
    """The config field holding this stack's layer count."""
    if "decoder" in stack_name.split("."):
        for field in DECODER_COUNTS:
            if getattr(config, field, None) is not None:
                return field
    return "num_hidden_layers"


def _chosen(keep_layers: list[int] | None, num_layers: int | None, total: int, where: str) -> list[int]:
    if keep_layers is None:
        assert num_layers is not None
        if not 1 <= num_layers <= total:
            raise UserError(f"model.num_layers={num_layers}: the backbone's {where} has {total} layers")
        return spaced_layers(total, num_layers)
    bad = [i for i in keep_layers if not 0 <= i < total]
    if bad:
        raise UserError(f"model.keep_layers={list(keep_layers)}: layer {bad[0]} is not one of the {where}'s 0..{total - 1}")
    return list(keep_layers)


def _renumber(block: torch.nn.Module, index: int) -> None:
    """Attention modules that know their position (the KV cache's slot: Llama, GPT-2, T5) learn the new one."""
    for module in block.modules():
        if isinstance(getattr(module, "layer_idx", None), int):
            module.layer_idx = index


def _carry_position_bias(first: torch.nn.Module, new_first: torch.nn.Module) -> None:
    """T5 keeps its relative position bias in the first block only: a student without that block takes it over."""
    if first is new_first:
        return
    new_modules = dict(new_first.named_modules())
    for name, module in first.named_modules():
        if getattr(module, "has_relative_attention_bias", False) and name in new_modules:
            target = new_modules[name]
            target.has_relative_attention_bias = True
            target.relative_attention_bias = module.relative_attention_bias


def shrink(model: torch.nn.Module, keep_layers: list[int] | None, num_layers: int | None) -> list[int]:
    """Keep only the chosen blocks of each layer stack of `model` (in place); returns the indices kept (of the last
    stack). The config's counts and per-layer lists follow."""
    config = model.config
    stacks = layer_stacks(model)
    if not stacks:
        raise UserError(f"model.keep_layers / model.num_layers: no layer stack found in {type(model).__name__}")
    kept: list[int] = []
    for name, stack in stacks:
        field = _count_field(config, name)
        kept = _chosen(keep_layers, num_layers, len(stack), name)
        blocks = [stack[i] for i in kept]
        _carry_position_bias(stack[0], blocks[0])
        for new_index, block in enumerate(blocks):
            _renumber(block, new_index)
        old = len(stack)
        _replace_stack(model, name, blocks)
        if getattr(config, field, None) == old or field == "num_hidden_layers":
            setattr(config, field, len(blocks))
        for per_layer in PER_LAYER_LISTS:
            values = getattr(config, per_layer, None)
            if isinstance(values, list) and len(values) == old:
                setattr(config, per_layer, [values[i] for i in kept])
    return kept


def _replace_stack(model: torch.nn.Module, name: str, blocks: list[torch.nn.Module]) -> None:
    parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    setattr(parent, name.rsplit(".", 1)[-1], torch.nn.ModuleList(blocks))


@contextmanager
def skipping_layer(model: torch.nn.Module, index: int) -> Iterator[None]:
    """Inside the block, `model` runs without block `index` of each layer stack (its input passes on unchanged)."""
    stacks = layer_stacks(model)
    for name, stack in stacks:
        _replace_stack(model, name, [b for i, b in enumerate(stack) if i != index])
    try:
        yield
    finally:
        for name, stack in stacks:
            _replace_stack(model, name, list(stack))
