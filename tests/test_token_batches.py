"""Equal-token batches (data/batches.py, the grouped batches of the families whose loss averages over tokens): every
row once per epoch, as many batches as fixed-size batches give, far less padding than random batches and tokens per
batch as even as theirs, resumable, split evenly over processes, and the same steps however a step is split."""

from __future__ import annotations

import pytest
import torch

from llmft.data.batches import FixedBatches, TokenBatches, equal_token_cuts
from llmft.data.loaders import EpochSampler


def _lengths(n: int, high: int = 160) -> list[int]:
    """CoNLL-like: many short rows, a long tail."""
    sample = torch.distributions.LogNormal(2.5, 0.8).sample((n,)).clamp(3, high)
    return [int(x) for x in sample]


def _batches(n: int, lengths: list[int], batch_size: int, step_rows: int = 0, rank: int = 0, world: int = 1):
    batches = TokenBatches(EpochSampler(n, 7, True, rank=rank, world=world), batch_size, lengths, step_rows)
    return batches, list(batches)


def test_every_row_once_as_many_batches_as_fixed_size_and_the_longest_first():
    torch.manual_seed(0)
    lengths = _lengths(3001)
    sampler, batches = _batches(3001, lengths, 32)
    assert len(batches) == sampler.num_batches == FixedBatches(EpochSampler(3001, 7, True), 32).num_batches == 94
    assert sorted(r for b in batches for r in b) == list(range(3001))
    assert max(lengths[i] for i in batches[0]) == max(lengths)  # an out-of-memory shows at step 1


def test_tokens_per_batch_are_as_even_as_random_batches_and_padding_far_lower():
    torch.manual_seed(0)
    lengths = _lengths(3001)
    _, tokens = _batches(3001, lengths, 32)
    fixed = list(FixedBatches(EpochSampler(3001, 7, True), 32))

    def real(batches):
        return [sum(lengths[i] for i in b) for b in batches[:-1]]  # the last batch is short in both

    def padded(batches):
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    assert padded(tokens) < padded(fixed) / 3
    spread = torch.tensor(real(tokens), dtype=torch.float)
    assert spread.std() / spread.mean() < torch.tensor(real(fixed), dtype=torch.float).std() / spread.mean()
    rows = [len(b) for b in tokens]
    assert max(rows) > 3 * 32 and min(rows) < 32  # many short rows in a batch, few long ones
    assert max(len(b) * max(lengths[i] for i in b) for b in tokens) <= 32 * max(lengths)  # never past a fixed batch


def test_resumes_at_its_batch_and_reshuffles_each_epoch():
    lengths = _lengths(500)
    sampler, batches = _batches(500, lengths, 16)
    sampler.set_position(0, 5)
    assert list(sampler) == batches[5:] and len(sampler) == len(batches) - 5
    sampler.set_position(1, 0)
    assert list(sampler) != batches


def test_several_processes_get_as_many_batches_and_every_row():
    lengths = _lengths(1001)
    shards = [_batches(1001, lengths, 8, rank=r, world=2)[1] for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == EpochSampler(1001, 7, True, world=2).shard_size // 8 + 1
    assert all(len(b) >= 1 for shard in shards for b in shard)
    assert set(r for shard in shards for b in shard for r in b) == set(range(1001))
    for a, b in zip(*shards):  # a global batch's rows dealt in turn: the ranks' tokens stay close
        assert abs(len(a) - len(b)) <= 1


@pytest.mark.parametrize("micro", [16, 8, 4])
def test_a_step_has_the_same_rows_however_it_is_split(micro):
    lengths = _lengths(1001, high=60)
    _, whole = _batches(1001, lengths, 16, step_rows=16)
    _, split = _batches(1001, lengths, micro, step_rows=16)
    per = 16 // micro
    steps = [sorted(r for b in split[i : i + per] for r in b) for i in range(0, len(split), per)]
    assert steps == [sorted(b) for b in whole]


def test_cuts_give_exactly_the_count_asked_with_the_minimum_rows():
    one_long = [500] + [2] * 99
    cuts = equal_token_cuts(one_long, 10, 2)
    bounds = list(zip([0, *cuts], [*cuts, 100]))
    assert len(bounds) == 10 and all(b - a >= 2 for a, b in bounds)
    assert bounds[0] == (0, 2)  # the long row does not drag short ones into its padding
    assert equal_token_cuts([5] * 8, 8, 1) == list(range(1, 8))
