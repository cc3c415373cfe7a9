"""Batch samplers the training loop reads one way: `num_batches` per epoch on this process and
`set_position(epoch, batches_done)` (a resumed run starts at its batch in the same order). `FixedBatches`: `batch_size`
rows each, cut from an EpochSampler's order. `TokenBatches`: rows of similar length, each batch holding about the
same number of tokens (more short rows, fewer long ones), so a loss averaged over a batch's tokens weighs every
token alike, as random batches do, while padding stays as low as length grouping's."""

from __future__ import annotations

import math
from typing import Any, Iterator


PADDING_TO_GROUP = 2.0  # a family grouping "where lengths vary" does when random batches would pad this many times


def random_padding(lengths: list[int], batch_size: int, sample: int = 65536) -> float:
    """Padded over real tokens of random batches of `batch_size` rows (one seeded shuffle of up to `sample` rows)."""
    import numpy as np

    sizes = np.random.default_rng(0).permutation(np.asarray(lengths, dtype=np.int64))[:sample]
    if sizes.sum() == 0:
        return 1.0
    padded = sum(len(chunk) * int(chunk.max()) for chunk in np.array_split(sizes, math.ceil(len(sizes) / batch_size)))
    return padded / int(sizes.sum())


class FixedBatches:
    """`batch_size` consecutive rows of the sampler's order per batch (the last one may be short)."""

    def __init__(self, sampler: Any, batch_size: int) -> None:
        self.sampler, self.batch_size = sampler, batch_size

    @property
    def num_batches(self) -> int:
        return math.ceil(self.sampler.shard_size / self.batch_size)

    def set_position(self, epoch: int, batches_done: int) -> None:
        self.sampler.set_position(epoch, batches_done * self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rows = list(self.sampler)
        for start in range(0, len(rows), self.batch_size):
            yield rows[start : start + self.batch_size]

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)


class TokenBatches:
    """As many batches per epoch as `FixedBatches` gives (the same steps, so the same schedule), of similar-length rows
    with about equal tokens (`token_batches`). Under several processes a batch is global: rank r takes every world-th
    of its rows. `step_rows`: rows per optimizer step, all processes (0: one batch per step); the steps are cut first
    and each into its micro-batches, so a step trains on the same rows however it is split (the memory plan's
    micro-batches do not change the run)."""

    def __init__(self, sampler: Any, batch_size: int, lengths: list[int], step_rows: int = 0, window: int = 50) -> None:
        self.sampler, self.batch_size, self.lengths, self.window = sampler, batch_size, lengths, window
        self.per_step = max(1, step_rows // (batch_size * sampler.world))  # micro-batches per optimizer step
        self.epoch, self.start = 0, 0

    @property
    def num_batches(self) -> int:
        return math.ceil(self.sampler.shard_size / self.batch_size)

    def set_position(self, epoch: int, batches_done: int) -> None:
        self.epoch, self.start = epoch, batches_done

    def __iter__(self) -> Iterator[list[int]]:
        import torch

        sampler, world = self.sampler, self.sampler.world
        generator = torch.Generator().manual_seed(sampler.seed + self.epoch)
        order = sampler.drawn(generator)
        order = torch.cat([order, order[: sampler.shard_size * world - sampler.size]])  # every rank as many rows
        rows = self.batch_size * world
        least = world * self.per_step  # a row for each process in each of the step's micro-batches
        steps = token_batches(order, self.lengths, rows * self.per_step, generator, least, self.window)
        size, counts = torch.tensor(self.lengths), [self.per_step] * len(steps)
        if len(order) % (rows * self.per_step):  # the short last step: as many micro-batches as its rows fill
            counts[-1] = math.ceil(len(steps[-1]) / rows)
        batches = [b for step, count in zip(steps, counts) for b in _split(step, size, count, world)]
        for batch in batches[self.start :]:
            yield batch[sampler.rank :: world].tolist()

    def __len__(self) -> int:
        return self.num_batches - self.start


def token_batches(order: Any, lengths: list[int], rows: int, generator: Any, least: int = 1, window: int = 50) -> list:
    """`order` cut into ceil(len(order) / rows) batches (tensors of row indices): each window of `window` x `rows` rows
    sorted by length, longest first, and cut into batches of about equal padded tokens (`equal_token_cuts`; where that
    leaves a batch under `least` rows, the window is cut again with that minimum: so the cuts do not depend on the
    processes or a step's micro-batches unless they must); what is left over a multiple of `rows` (the
    epoch's last rows) is the shortest rows of the last window, one batch that goes last. The batches are shuffled, the
    one with the longest row first (an out-of-memory shows at step 1)."""
    import torch

    size = torch.tensor(lengths)
    batches, tail = [], []
    for chunk in order.split(rows * window):
        chunk = chunk[torch.argsort(size[chunk], descending=True, stable=True)]
        full = len(chunk) - len(chunk) % rows
        cuts = _cuts(size[chunk[:full]].tolist(), full // rows, least) if full else []
        batches += [chunk[a:b] for a, b in zip([0, *cuts], [*cuts, full]) if b > a]
        tail += [chunk[full:]] if full < len(chunk) else []
    if not batches:
        return tail
    first = max(range(len(batches)), key=lambda i: int(size[batches[i]].max()))
    rest = [batches[i] for i in range(len(batches)) if i != first]
    return [batches[first], *[rest[i] for i in torch.randperm(len(rest), generator=generator).tolist()], *tail]


def _cuts(descending: list[int], count: int, least: int) -> list[int]:
    cuts = equal_token_cuts(descending, count, 1)
    if min(b - a for a, b in zip([0, *cuts], [*cuts, len(descending)])) < least:
        cuts = equal_token_cuts(descending, count, least)
    return cuts


def _split(step: Any, size: Any, count: int, world: int) -> list:
    """A step's rows (longest first) as `count` micro-batches of about equal tokens (each of >= `world` rows)."""
    cuts = equal_token_cuts(size[step].tolist(), count, world) if count > 1 else []
    return [step[a:b] for a, b in zip([0, *cuts], [*cuts, len(step)])]


def equal_token_cuts(lengths: list[int], count: int, min_rows: int) -> list[int]:
    """Where to cut rows (in the order given, longest first) into exactly `count` batches of >= `min_rows`
    rows whose padded tokens (rows x the batch's longest row) stay under the smallest budget that needs no more than
    `count` batches; the batches with most rows are halved while there are too few. `count` x `min_rows` <= rows."""
    import numpy as np

    sizes = np.maximum(np.asarray(lengths, dtype=np.int64), 1)
    low, high = int(sizes.max()), int(sizes.max()) * len(sizes)
    while low < high:  # the smallest budget packing greedily into <= count batches
        middle = (low + high) // 2
        low, high = (middle + 1, high) if len(_greedy(sizes, middle, min_rows, count)) > count else (low, middle)
    starts = _greedy(sizes, low, min_rows, count)
    while len(starts) < count:
        ends = [*starts[1:], len(sizes)]
        widest = max(range(len(starts)), key=lambda i: ends[i] - starts[i])
        if ends[widest] - starts[widest] < 2 * min_rows:
            return _even_cuts(len(sizes), count)
        starts.insert(widest + 1, starts[widest] + (ends[widest] - starts[widest]) // 2)
    return starts[1:]


def _greedy(sizes: Any, budget: int, min_rows: int, limit: int) -> list[int]:
    """Batch starts when each batch takes as many rows as keep (rows x its longest row) within `budget` (at least
    `min_rows`; a shorter tail joins the batch before it); it stops counting past `limit` batches."""
    import numpy as np

    starts, at, most = [], 0, budget // int(sizes.min())
    while at < len(sizes) and len(starts) <= limit:
        starts.append(at)
        padded = np.maximum.accumulate(sizes[at : at + most]) * np.arange(1, min(most, len(sizes) - at) + 1)
        at += max(min_rows, int(np.argmax(padded > budget)) if padded[-1] > budget else len(padded))
    if at >= len(sizes) and len(starts) > 1 and len(sizes) - starts[-1] < min_rows:
        starts.pop()
    return starts


def _even_cuts(rows: int, count: int) -> list[int]:
    return [rows * i // count for i in range(1, count)]
