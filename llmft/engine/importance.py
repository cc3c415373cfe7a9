"""How much a model needs each attention head or each layer, measured on held-out batches with the task's own loss:
the loss increase when it is masked (skipped), or for heads the gradient of the loss with respect to a gate on the head
(Michel et al. 2019, "Are Sixteen Heads Really Better than One?"). What `llmft prune` ranks before it removes."""

from __future__ import annotations

from typing import Any, Protocol

import torch

from llmft.models.eval_mode import eval_mode
from llmft.models.heads import attention_heads, head_gates
from llmft.models.student import layer_stacks, skipping_layer


class LossTask(Protocol):
    def loss_sum(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...
    def count(self, batch: dict[str, torch.Tensor]) -> int: ...


def mean_loss(task: LossTask, model: Any, batches: list[dict[str, torch.Tensor]]) -> float:
    """The task's loss per item over `batches` (already on the model's device), without gradients."""
    total, items = 0.0, 0
    with eval_mode(model), torch.no_grad():
        for batch in batches:
            total += float(task.loss_sum(model, batch))
            items += task.count(batch)
    return total / max(items, 1)


def _ones(model: Any) -> list[torch.Tensor]:
    device = next(model.parameters()).device
    return [torch.ones(layer.count, device=device) for layer in attention_heads(model)]


def head_loss_increase(task: LossTask, model: Any, batches: list[dict[str, torch.Tensor]]) -> list[list[float]]:
    """[layer][head]: the loss with that one head masked, less the loss with every head (one pass per head)."""
    base = mean_loss(task, model, batches)
    scores = []
    for index, gates in enumerate(_ones(model)):
        row = []
        for head in range(len(gates)):
            masked = _ones(model)
            masked[index][head] = 0.0
            with head_gates(model, masked):
                row.append(mean_loss(task, model, batches) - base)
        scores.append(row)
    return scores


def head_gradient(task: LossTask, model: Any, batches: list[dict[str, torch.Tensor]]) -> list[list[float]]:
    """[layer][head]: the sum over batches of |d loss / d gate| of a gate (at 1) on each head; one pass with gradients,
    the weights' own gradients left as they were."""
    gates = [g.requires_grad_(True) for g in _ones(model)]
    totals = [torch.zeros_like(g) for g in gates]
    weights = [p for p in model.parameters() if p.requires_grad]
    for p in weights:
        p.requires_grad_(False)  # only the gates need gradients
    try:
        with eval_mode(model), head_gates(model, gates):
            for batch in batches:
                loss = task.loss_sum(model, batch) / max(task.count(batch), 1)
                for total, grad in zip(totals, torch.autograd.grad(loss, gates)):
                    total += grad.abs()
    finally:
        for p in weights:
            p.requires_grad_(True)
    return [t.tolist() for t in totals]


def layer_loss_increase(task: LossTask, model: Any, batches: list[dict[str, torch.Tensor]]) -> list[float]:
    """[layer]: the loss with that block skipped (in every layer stack), less the loss with all of them."""
    base = mean_loss(task, model, batches)
    scores = []
    for index in range(len(layer_stacks(model)[0][1])):
        with skipping_layer(model, index):
            scores.append(mean_loss(task, model, batches) - base)
    return scores


def least_important_heads(scores: list[list[float]], how_many: int) -> dict[int, list[int]]:
    """The `how_many` heads of lowest score, over all layers, each layer keeping at least one: {layer: [heads]}."""
    ranked = sorted((score, layer, head) for layer, row in enumerate(scores) for head, score in enumerate(row))
    chosen: dict[int, list[int]] = {}
    for _, layer, head in ranked:
        if sum(len(v) for v in chosen.values()) == how_many:
            break
        if len(chosen.get(layer, [])) < len(scores[layer]) - 1:
            chosen.setdefault(layer, []).append(head)
    return {layer: sorted(heads) for layer, heads in sorted(chosen.items())}
