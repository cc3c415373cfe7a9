"""Attention heads of BERT-like encoders (BERT, RoBERTa, ELECTRA, XLM-R, MiniLM: `query`/`key`/`value` projections and
an `output.dense` projection of the concatenated heads): gates that mask them, and their removal. A removed head's rows
of the query/key/value weights and its columns of the output projection are cut out, so the model is smaller and
faster. transformers 5 dropped `prune_heads` and `config.pruned_heads`; llmft writes `pruned_heads` in the config (the
format transformers 4 read, original head indices per layer) and `load_pruned` rebuilds such a checkpoint."""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from llmft.errors import UserError
from llmft.models.student import layer_stacks

PROJECTIONS = ("query", "key", "value")


@dataclass
class LayerHeads:
    """One layer's self-attention: its projections, the output projection of its heads, the size of a head."""

    attention: torch.nn.Module  # holds query, key, value (and attention_head_size)
    output: torch.nn.Linear  # the projection of the concatenated heads
    head_size: int

    @property
    def count(self) -> int:
        return self.attention.query.out_features // self.head_size


def _self_attention(block: torch.nn.Module) -> LayerHeads | None:
    for name, module in block.named_modules():
        if "cross" in name or not all(isinstance(getattr(module, p, None), torch.nn.Linear) for p in PROJECTIONS):
            continue
        parent = block.get_submodule(name.rsplit(".", 1)[0]) if "." in name else block
        output = getattr(getattr(parent, "output", None), "dense", None)
        size = getattr(module, "attention_head_size", None)
        if isinstance(output, torch.nn.Linear) and isinstance(size, int):
            return LayerHeads(module, output, size)
    return None


def attention_heads(model: torch.nn.Module) -> list[LayerHeads]:
    """Each layer's heads, first layer first; a model that is not a BERT-like encoder is refused in one line."""
    stacks = layer_stacks(model)
    found = [_self_attention(block) for block in stacks[0][1]] if len(stacks) == 1 else []
    if not found or any(f is None for f in found):
        kind = getattr(model.config, "model_type", type(model).__name__)
        raise UserError(
            f"method=heads removes attention heads of BERT-like encoders (query/key/value and output.dense); {kind} is "
            "not one: use method=layers (drops whole blocks) or method=magnitude (unstructured sparsity)"
        )
    return found  # type: ignore[return-value]


@contextmanager
def head_gates(model: torch.nn.Module, gates: list[torch.Tensor]) -> Iterator[None]:
    """Each layer's heads multiplied by its gate (a tensor of one value per head; 0 masks a head) inside the block."""
    hooks = []
    for layer, gate in zip(attention_heads(model), gates):

        def scale(module: Any, args: tuple, layer: LayerHeads = layer, gate: torch.Tensor = gate) -> tuple:
            x = args[0]
            per_head = x.view(*x.shape[:-1], -1, layer.head_size) * gate.to(x.dtype).view(-1, 1)
            return (per_head.view(x.shape), *args[1:])

        hooks.append(layer.output.register_forward_pre_hook(scale))
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def saved_pruned_heads(config: Any) -> dict[int, list[int]]:
    """{layer: [original head indices removed]} from a config (JSON keys are strings)."""
    return {int(k): sorted(int(h) for h in v) for k, v in (getattr(config, "pruned_heads", None) or {}).items() if v}


def original_indices(config: Any, layer: int, total: int) -> list[int]:
    """The original index of each head the layer still has (heads removed before are skipped)."""
    gone = set(saved_pruned_heads(config).get(layer, []))
    return [h for h in range(total) if h not in gone]


def _cut(linear: torch.nn.Linear, keep: torch.Tensor, dim: int) -> torch.nn.Linear:
    """A copy of `linear` with only the `keep` rows (dim 0: outputs) or columns (dim 1: inputs) of its weight."""
    weight = linear.weight.detach().index_select(dim, keep.to(linear.weight.device)).clone()
    bias = linear.bias
    new = torch.nn.Linear(weight.shape[1], weight.shape[0], bias is not None, device=weight.device, dtype=weight.dtype)
    new.weight.data.copy_(weight)
    if bias is not None:
        new.bias.data.copy_(bias.detach() if dim == 1 else bias.detach().index_select(0, keep.to(bias.device)))
    return new


def remove_heads(model: torch.nn.Module, heads: dict[int, list[int]]) -> None:
    """Cut the given heads (each layer's current positions) out of `model` in place; `config.pruned_heads` gains their
    original indices. A layer keeps at least one head."""
    config = model.config
    removed = saved_pruned_heads(config)
    for index, layer in enumerate(attention_heads(model)):
        gone = sorted(set(heads.get(index, [])))
        if not gone:
            continue
        if len(gone) >= layer.count:
            raise UserError(f"layer {index} would lose all its {layer.count} heads; a layer keeps at least one")
        original = original_indices(config, index, config.num_attention_heads)
        removed[index] = sorted(removed.get(index, []) + [original[h] for h in gone])
        keep = [h for h in range(layer.count) if h not in gone]
        rows = torch.cat([torch.arange(h * layer.head_size, (h + 1) * layer.head_size) for h in keep])
        for name in PROJECTIONS:
            setattr(layer.attention, name, _cut(getattr(layer.attention, name), rows, 0))
        parent = model.get_submodule(_name_of(model, layer.output).rsplit(".", 1)[0])
        parent.dense = _cut(layer.output, rows, 1)
        layer.attention.num_attention_heads = len(keep)
        layer.attention.all_head_size = len(keep) * layer.head_size
    config.pruned_heads = {str(k): v for k, v in sorted(removed.items())}


def _name_of(model: torch.nn.Module, module: torch.nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is module)


def is_head_pruned(folder: str | Path) -> bool:
    """Whether a checkpoint folder holds a model with heads removed (config.json names `pruned_heads`)."""
    config = Path(folder) / "config.json"
    try:
        return bool(json.loads(config.read_text()).get("pruned_heads")) if config.is_file() else False
    except (OSError, ValueError):
        return False


def load_pruned(auto_class: Any, folder: str | Path, **config_overrides: Any) -> tuple[Any, dict[str, list[str]]]:
    """(model, load info) of a checkpoint with heads removed: the architecture built from its config, the same heads
    cut out, then its weights (safetensors) loaded. What transformers 4 did for `config.pruned_heads`."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    folder = Path(folder)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False, **config_overrides)
    pruned = saved_pruned_heads(config)
    config.pruned_heads = {}
    model = auto_class.from_config(config)
    remove_heads(model, pruned)
    state: dict[str, torch.Tensor] = {}
    for weights in sorted(folder.glob("*.safetensors")):
        state.update(load_file(weights))
    if not state:
        raise UserError(f"{folder} has pruned heads but no *.safetensors weights")
    result = model.load_state_dict(state, strict=False)
    model.tie_weights()
    missing = [k for k in result.missing_keys if not _tied_to_a_loaded_tensor(model, k, state)]
    return model.eval(), {"missing_keys": missing, "unexpected_keys": list(result.unexpected_keys)}


def _tied_to_a_loaded_tensor(model: torch.nn.Module, key: str, state: dict[str, Any]) -> bool:
    """A tied copy (an output layer sharing the embeddings) that save_pretrained left out."""
    params = dict(model.named_parameters(remove_duplicate=False))
    tensor = params.get(key)
    return tensor is not None and any(params.get(other) is tensor for other in state if other != key)
