"""Packing for decoder-only training: several tokenized examples per row, no padding in between; and raw text cut
into blocks (`group_texts`).

Each example keeps its own positions (position ids restart at 0) and attends only to itself: transformers builds a
block-diagonal causal mask from restarting position ids when no attention mask is passed (or uses varlen flash
attention). The first token of every example is never a target, exactly as when it starts its own row, so the
summed loss over a packed set equals the unpacked one.
"""

from __future__ import annotations

import bisect
from typing import Any

import torch


IGNORE = -100  # transformers' ignore index: positions no loss is taken on


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
    """A dataset of packed rows (input_ids, labels, position_ids) from one of tokenized examples. Works on the Arrow
    columns as flat numpy arrays: no Python list per token, whatever the size of the data."""
    import numpy as np
    import pyarrow as pa
    from datasets import Dataset
    from datasets.table import InMemoryTable

    table = features.with_format("arrow")[:]
    ids, labels = (table.column(c).combine_chunks() for c in ("input_ids", "labels"))
    starts = ids.offsets.to_numpy()[:-1].astype(np.int64) - ids.offsets[0].as_py()
    lengths = np.diff(ids.offsets.to_numpy()).astype(np.int64)
    flat_ids, flat_labels = ids.flatten().to_numpy(), labels.flatten().to_numpy().copy()
    flat_labels[starts] = IGNORE  # the first token of an example is context, as at the start of a row
    rows = [sorted(row) for row in bins_best_fit(lengths.tolist(), max_length)]  # data order inside a row
    order = np.fromiter((i for row in rows for i in row), dtype=np.int64)
    gather = np.concatenate([np.arange(starts[i], starts[i] + lengths[i]) for i in order])
    positions = np.concatenate([np.arange(lengths[i]) for i in order])
    offsets = pa.array(np.concatenate([[0], np.cumsum([lengths[row].sum() for row in rows])]).astype(np.int32))

    def column(values: Any) -> Any:
        return pa.ListArray.from_arrays(offsets, pa.array(values))

    return Dataset(
        InMemoryTable(
            pa.table(
                {"input_ids": column(flat_ids[gather]), "labels": column(flat_labels[gather]), "position_ids": column(positions)}
            )
        )
    )


def group_texts(documents: Any, block: int) -> tuple[Any, dict[str, int]]:
    """run_clm's `group_texts`: the tokenized documents (each ending in EOS) concatenated and cut into rows of `block`
    tokens, labels equal to the inputs; a block attends across the documents in it, as in pre-training. Unlike
    run_clm the shorter tail is kept as a last block, so no token is lost, unless it is one token (which no position
    predicts). Returns the blocks and their counts for the run's data statistics."""
    import numpy as np
    import pyarrow as pa
    from datasets import Dataset
    from datasets.table import InMemoryTable

    flat = documents.with_format("arrow")[:].column("input_ids").combine_chunks().flatten().to_numpy()
    total = len(flat)
    kept = total - 1 if total % block == 1 else total
    offsets = np.append(np.arange(0, kept, block), kept).astype(np.int32)
    column = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat[:kept]))
    blocks = len(offsets) - 1
    stats = {
        "documents": len(documents),
        "tokens": total,
        "blocks": blocks,
        "block_length": block,
        "dropped_tail_tokens": total - kept,
        "supervised_tokens": kept - blocks,
    }  # a block's first token is context
    return Dataset(InMemoryTable(pa.table({"input_ids": column, "labels": column}))), stats


def packed_volume(batch: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(examples, tokens) in a batch of packed rows: an example starts where positions restart; a segment without a
    single target is the collator's padding, not an example."""
    positions, labels = batch["position_ids"], batch["labels"]
    segment = (positions == 0).cumsum(dim=1)
    rows = torch.arange(positions.shape[0]).unsqueeze(1)
    key = rows * (positions.shape[1] + 1) + segment  # one id per (row, segment)
    examples = torch.unique(key[labels != IGNORE])
    return int(examples.numel()), int(torch.isin(key, examples).sum())
