"""Packing for decoder-only training: several tokenized examples per row, no padding in between.

Each example keeps its own positions (position ids restart at 0) and attends only to itself: transformers builds a
block-diagonal causal mask from restarting position ids when no attention mask is passed (or uses varlen flash
attention). The first token of every example is never a target, exactly as when it starts its own row, so the
summed loss over a packed set equals the unpacked one.
"""

from __future__ import annotations

import bisect
from typing import Any

import torch

IGNORE = -100


def bins_best_fit(lengths: list[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing: each example (longest first) goes into the fullest row it still fits in."""
    rows: list[list[int]] = []
    room: list[tuple[int, int]] = []  # (free tokens, row index), sorted
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        at = bisect.bisect_left(room, (lengths[i], -1))
        if at < len(room):
            free, row = room.pop(at)
        else:
            free, row = capacity, len(rows)
            rows.append([])
        rows[row].append(i)
        bisect.insort(room, (free - lengths[i], row))
    return rows


def pack(features: Any, max_length: int) -> Any:
    """A dataset of packed rows (input_ids, labels, position_ids) from one of tokenized examples."""
    from datasets import Dataset

    ids, labels = features["input_ids"], features["labels"]
    out: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "position_ids": []}
    for row in bins_best_fit([len(x) for x in ids], max_length):
        row_ids, row_labels, positions = [], [], []
        for i in sorted(row):  # data order inside a row
            row_ids += ids[i]
            row_labels += [IGNORE, *labels[i][1:]]  # the first token is context, as at the start of a row
            positions += range(len(ids[i]))
        out["input_ids"].append(row_ids)
        out["labels"].append(row_labels)
        out["position_ids"].append(positions)
    return Dataset.from_dict(out)


def collate_packed(rows: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad packed rows. No attention mask: the padding gets positions of its own (a separate, unsupervised
    segment), so the block-diagonal mask keeps real tokens from seeing it."""
    width = max(len(r["input_ids"]) for r in rows)
    batch: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "position_ids": []}
    for r in rows:
        pad = width - len(r["input_ids"])
        batch["input_ids"].append(r["input_ids"] + [pad_id] * pad)
        batch["labels"].append(r["labels"] + [IGNORE] * pad)
        batch["position_ids"].append(r["position_ids"] + list(range(pad)))
    return {k: torch.tensor(v) for k, v in batch.items()}


@torch.no_grad()
def attends_within_examples(model: Any, vocab_size: int) -> bool:
    """Probe the backbone: the logits of an example packed after another must equal its logits alone. False for
    architectures that ignore packed position ids in their attention mask (packing would leak across examples)."""
    generator = torch.Generator().manual_seed(0)
    first, second = (torch.randint(3, max(vocab_size, 4), (n,), generator=generator) for n in (5, 7))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    alone = model(input_ids=second[None].to(device), use_cache=False).logits[0]
    packed_ids = torch.cat([first, second])[None].to(device)
    positions = torch.cat([torch.arange(5), torch.arange(7)])[None].to(device)
    packed = model(input_ids=packed_ids, position_ids=positions, use_cache=False).logits[0, 5:]
    model.train(was_training)
    return bool(torch.allclose(alone.float(), packed.float(), atol=1e-4, rtol=1e-3))
