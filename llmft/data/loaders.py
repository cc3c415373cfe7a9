"""Train and eval loaders: a resumable per-epoch sampler (weighted, split over processes), length-grouped batches,
seeded workers. torch is imported inside the functions, off the CLI's start-up path."""

from __future__ import annotations

from typing import Any, Callable, Optional

from llmft.data.batches import FixedBatches, TokenBatches

ROW_INDEX = "row_index"  # make_loader(row_index=True): each row's index in the dataset, as a batch field


class EpochSampler:
    """Shuffles each epoch with `seed + epoch` and can start part-way, so a resumed run sees the same
    order from where it stopped without replaying the batches it already trained on."""

    def __init__(
        self,
        size: int,
        seed: int,
        shuffle: bool,
        weights: Any = None,
        rank: int = 0,
        world: int = 1,
        lengths: Optional[list[int]] = None,
        batch_size: int = 1,
        wrap: bool = True,
        step_rows: int = 0,
    ):
        self.size, self.seed, self.shuffle, self.weights = size, seed, shuffle, weights
        self.rank, self.world, self.wrap = rank, world, wrap  # wrap: pad the order so every rank gets as many rows
        self.lengths, self.batch_size = lengths, batch_size  # lengths: group rows of similar length into batches
        self.step_rows = step_rows  # > 0: keep the order's steps, sort each step's rows by length into its micro-batches
        self.epoch, self.start = 0, 0

    @property
    def shard_size(self) -> int:
        """Rows this rank sees per epoch (training pads the order by wrapping so every rank sees as many; an eval
        shard is exact: every row is scored once)."""
        return -(-self.size // self.world) if self.wrap else len(range(self.rank, self.size, self.world))

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def drawn(self, generator: Any) -> Any:
        """This epoch's rows in the order drawn (shuffled, weighted with replacement, or as they are)."""
        import torch

        if self.weights is not None:  # weighted sampling with replacement (imbalanced classes)
            return torch.multinomial(self.weights, self.size, replacement=True, generator=generator)
        return torch.randperm(self.size, generator=generator) if self.shuffle else torch.arange(self.size)

    def __iter__(self) -> Any:
        import torch

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = self.drawn(generator)
        if self.lengths is not None and self.step_rows:
            order = sort_within_steps(order, self.lengths, self.step_rows)
        elif self.lengths is not None:
            order = group_by_length(order, self.lengths, self.batch_size * self.world, generator if self.shuffle else None)
        if self.world > 1:  # rank r takes every world-th row: the union of one step's rank batches is the global batch
            padded = torch.cat([order, order[: self.shard_size * self.world - self.size]]) if self.wrap else order
            order = padded[self.rank :: self.world]
        return iter(order[self.start :].tolist())

    def __len__(self) -> int:
        return self.shard_size - self.start


def group_by_length(order: Any, lengths: list[int], batch: int, generator: Any = None, window: int = 50) -> Any:
    """Reorder so each run of `batch` rows has similar lengths (less padding). Training keeps its randomness: the
    shuffled order is cut into windows of `window` batches, each window sorted by length, and the batches shuffled,
    except that the batch holding the longest row goes first (an out-of-memory shows at step 1, not hours in).
    Without a generator (eval) the whole order is sorted, longest first."""
    import torch

    size = torch.tensor(lengths)
    if generator is None or len(order) == 0:
        return order[torch.argsort(size[order], descending=True, stable=True)]
    chunks = [c[torch.argsort(size[c], descending=True, stable=True)] for c in order.split(batch * window)]
    batches = list(torch.cat(chunks).split(batch))
    first = max(range(len(batches)), key=lambda i: int(size[batches[i][0]]))
    rest = [batches[i] for i in range(len(batches)) if i != first]
    perm = torch.randperm(len(rest), generator=generator).tolist()
    return torch.cat([batches[first], *[rest[i] for i in perm]])


def sort_within_steps(order: Any, lengths: list[int], step_rows: int) -> Any:
    """Each optimizer step's rows (`step_rows` consecutive rows of the order, all processes together) sorted by length,
    longest first: a step trains on the same rows as before, so with a loss summed over rows and normalised by the
    whole step (the loop's accumulation) its gradient is unchanged, while each micro-batch pads only to its own
    longest row. Rank r still takes every world-th row, so every process's micro-batches are sorted too."""
    import torch

    size = torch.tensor(lengths)
    return torch.cat([c[torch.argsort(size[c], descending=True, stable=True)] for c in order.split(step_rows)])


def row_lengths(ds: Any) -> list[int]:
    """Tokens per row, read from the Arrow list offsets (no Python list per row)."""
    import pyarrow.compute as pc

    return pc.list_value_length(ds.with_format("arrow")[:]["input_ids"]).to_pylist()


def make_loader(
    ds: Any,
    batch_size: int,
    collate: Callable,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    weights: Any = None,
    rank: int = 0,
    world: int = 1,
    by_length: bool = False,
    wrap: bool = True,
    step_rows: int = 0,
    row_index: bool = False,
    by_tokens: bool = False,
    sort_steps: bool = True,
) -> Any:
    """A DataLoader over an EpochSampler's batches (`batches.FixedBatches`, or with `by_tokens` `TokenBatches`: the
    loop reads `loader.batch_sampler.num_batches` and sets its position); its own generator keeps the global RNG
    (dropout) untouched. `by_length`: batches of similar-length rows (training: bucketed and still shuffled; eval:
    longest first); with `by_tokens` (training) they hold about equal tokens rather than equal rows.
    `step_rows`: rows per optimizer step (all processes); when a step has several micro-batches and `by_length` is off,
    each step's rows are sorted by length into them (`sort_within_steps`: the same steps, less padding) unless
    `sort_steps` is off (a loss coupling rows); `TokenBatches` cut steps before their micro-batches.
    `row_index`: each batch also carries its rows' indices in `ds` (ROW_INDEX), whatever order they were drawn in."""
    import torch

    by_tokens = by_tokens and by_length and shuffle and wrap
    within = step_rows if sort_steps and not by_length and step_rows > batch_size * world else 0
    lengths = row_lengths(ds) if by_length or within else None
    sampler = EpochSampler(len(ds), seed, shuffle, weights, rank, world, None if by_tokens else lengths, batch_size, wrap, within)
    return torch.utils.data.DataLoader(
        IndexedRows(ds) if row_index else ds,
        batch_sampler=TokenBatches(sampler, batch_size, lengths, step_rows) if by_tokens else FixedBatches(sampler, batch_size),
        collate_fn=CollateWithIndex(collate) if row_index else collate,
        generator=torch.Generator().manual_seed(seed),
        num_workers=num_workers,
        worker_init_fn=_seed_worker,
    )


def batching(loader: Any) -> dict[str, str]:
    """What the run plan says of a train loader's batches beyond `group_by_length`."""
    batches = getattr(loader, "batch_sampler", None)
    if isinstance(batches, TokenBatches):
        return {"batches": "rows of similar length, about equal tokens each (more short rows, fewer long ones)"}
    if getattr(getattr(batches, "sampler", None), "step_rows", 0):
        return {"micro_batches": "each step's rows sorted by length (the same steps, less padding)"}
    return {}


class IndexedRows:
    """A dataset whose rows come with their index: (index, row)."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.ds[index]


class CollateWithIndex:
    """The task's collator over the rows of IndexedRows, plus their indices as a ROW_INDEX tensor."""

    def __init__(self, collate: Callable) -> None:
        self.collate = collate

    def __call__(self, items: list[tuple[int, Any]]) -> Any:
        import torch

        batch = self.collate([row for _, row in items])
        batch[ROW_INDEX] = torch.tensor([index for index, _ in items], dtype=torch.long)
        return batch


def _seed_worker(worker_id: int) -> None:
    """Workers get seeds derived from the loader's generator (torch does that); numpy/random follow it."""
    import random

    import numpy as np
    import torch

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
