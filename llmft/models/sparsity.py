"""Unstructured magnitude pruning (torch.nn.utils.prune): the smallest weights of the transformer blocks' Linear layers,
ranked together across the blocks, set to zero for good. The shapes stay, so the checkpoint loads anywhere; dense
matmuls on CPU and GPU do the same work with zeros, so it is not faster (structured pruning is)."""

from __future__ import annotations

import torch
from torch.nn.utils import prune

from llmft.errors import UserError
from llmft.models.student import layer_stacks


def block_linears(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """The Linear layers inside the transformer blocks, by name (embeddings and the task's head are left as they are)."""
    stacks = {name for name, _ in layer_stacks(model)}
    found = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and any(name.startswith(stack + ".") for stack in stacks)
    }
    if not found:
        raise UserError(f"method=magnitude prunes the Linear layers of the transformer blocks; {type(model).__name__} has none")
    return found


def prune_magnitude(model: torch.nn.Module, amount: float) -> None:
    """Zero the `amount` fraction of smallest-magnitude weights among the blocks' Linear layers, made permanent."""
    linears = list(block_linears(model).values())
    prune.global_unstructured([(m, "weight") for m in linears], pruning_method=prune.L1Unstructured, amount=amount)
    for module in linears:
        prune.remove(module, "weight")


def sparsity(model: torch.nn.Module) -> dict[str, object]:
    """The fraction of zero weights in each block Linear, over all of them, and over every parameter of the model."""
    linears = block_linears(model)
    per_layer = {name: float((m.weight == 0).float().mean()) for name, m in linears.items()}
    zeros = sum(int((m.weight == 0).sum()) for m in linears.values())
    total = sum(m.weight.numel() for m in linears.values())
    all_zeros = sum(int((p == 0).sum()) for p in model.parameters())
    all_total = sum(p.numel() for p in model.parameters())
    return {"block_linears": zeros / total, "all_parameters": all_zeros / all_total, "per_layer": per_layer}
