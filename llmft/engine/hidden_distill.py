"""DistilBERT's hidden-state term for finetune=distill (`finetune.hidden_weight`): the cosine distance between the
output of each student block i and that of the teacher block it was built from (model.keep_layers[i], or the evenly
spaced layers of model.num_layers), averaged over the layers and the attended positions. Block outputs are read by
forward hooks on the two models' last layer stacks while the task's own distillation loss runs them, so every family
whose loss runs each model once gets it unchanged."""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from llmft.errors import UserError
from llmft.models.student import layer_stacks, spaced_layers


def _blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    stacks = layer_stacks(model)
    if not stacks:
        raise UserError(f"finetune.hidden_weight: no layer stack found in {type(model).__name__}")
    return stacks[-1][1]


def layer_map(student: torch.nn.Module, teacher: torch.nn.Module, keep_layers: list[int] | None) -> list[int]:
    """The teacher block each student block is compared with: `keep_layers`, else the evenly spaced ones
    (model.num_layers' choice); a student whose width differs from the teacher's is refused in one line."""
    ours, theirs = len(_blocks(student)), len(_blocks(teacher))
    chosen = list(keep_layers) if keep_layers is not None else spaced_layers(theirs, ours)
    if len(chosen) != ours or max(chosen) >= theirs:
        raise UserError(
            f"finetune.hidden_weight: the student's {ours} layers cannot be matched to the teacher's {theirs} "
            f"(layers {chosen}); set model.keep_layers to the teacher layers the student was built from"
        )
    widths = (getattr(student.config, "hidden_size", None), getattr(teacher.config, "hidden_size", None))
    if widths[0] != widths[1]:
        raise UserError(f"finetune.hidden_weight needs equal hidden sizes: student {widths[0]}, teacher {widths[1]}")
    return chosen


@contextmanager
def block_outputs(model: torch.nn.Module) -> Iterator[dict[int, torch.Tensor]]:
    """Inside the block, the returned dict holds each block's output (batch, positions, hidden) of the last forward."""
    seen: dict[int, torch.Tensor] = {}

    def keep(index: int) -> Any:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            seen[index] = output[0] if isinstance(output, tuple) else output

        return hook

    with ExitStack() as stack:
        for i, block in enumerate(_blocks(model)):
            stack.callback(block.register_forward_hook(keep(i)).remove)
        yield seen


def cosine_distance_mean(
    student: dict[int, torch.Tensor], teacher: dict[int, torch.Tensor], mapping: list[int], mask: torch.Tensor
) -> torch.Tensor:
    """Mean over the student's blocks and the attended positions (mask == 1) of 1 - cos(student i, teacher mapping[i])."""
    weights = mask.float()
    total = sum(
        ((1.0 - F.cosine_similarity(student[i].float(), teacher[j].detach().float(), dim=-1)) * weights).sum()
        for i, j in enumerate(mapping)
    )
    return total / (weights.sum().clamp(min=1.0) * len(mapping))


class HiddenMatch:
    """The hidden-state term as the distillation loss adds it: `weight * mean cosine distance * items`, so that the
    loop's division by the items leaves `weight * mean cosine distance`."""

    def __init__(self, weight: float, mapping: list[int]) -> None:
        self.weight, self.mapping = weight, mapping

    @contextmanager
    def watching(self, student: torch.nn.Module, teacher: torch.nn.Module) -> Iterator[tuple[dict, dict]]:
        with block_outputs(student) as ours, block_outputs(teacher) as theirs:
            yield ours, theirs

    def term(self, ours: dict, theirs: dict, batch: dict[str, torch.Tensor], items: int) -> torch.Tensor:
        shape = ours[0].shape[:2]  # multiple choice: (examples * choices, positions)
        mask = batch.get("attention_mask")
        if mask is None or mask.numel() != shape.numel():  # a T5 decoder stack: its positions are not the encoder's
            mask = torch.ones(shape, device=ours[0].device)
        mask = mask.reshape(shape)
        return self.weight * cosine_distance_mean(ours, theirs, self.mapping, mask) * items
