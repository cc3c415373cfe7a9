"""A step split into micro-batches (trainer.micro_batch_size, or the memory plan) sorts its rows by length into them
for the families whose loss is a sum of per-row terms: each step trains on the same rows, so its gradient is the one
of the unsorted step, and each micro-batch pads only to its own longest row."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import cli, only_run_dir
from llmft.data.loaders import sort_within_steps
from test_group_default import _plan


def test_each_step_keeps_its_rows_and_sorts_them_longest_first():
    lengths = [5, 1, 9, 3, 7, 2, 8, 4, 6, 10]
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    out = sort_within_steps(order, lengths, 4)
    for before, after in zip(order.split(4), out.split(4)):
        assert sorted(before.tolist()) == sorted(after.tolist())
        assert [lengths[i] for i in after] == sorted((lengths[i] for i in after), reverse=True)


def test_ner_micro_batches_are_sorted_within_steps_and_the_plan_says_so():
    batches, plan = _plan(["task=ner", "model=tiny-bert", "trainer.micro_batch_size=2", "trainer.group_by_length=false"])
    sampler = batches.sampler
    assert sampler.step_rows == 8 and plan["group_by_length"] is False and "sorted by length" in plan["micro_batches"]
    lengths, order = sampler.lengths, list(sampler)
    for start in range(0, len(order) - 7, 8):
        step = [lengths[i] for i in order[start : start + 8]]
        assert step == sorted(step, reverse=True)
    whole, plan = _plan(["task=ner", "model=tiny-bert", "trainer.group_by_length=false"])  # one pass per step
    whole = whole.sampler
    assert whole.step_rows == 0 and whole.lengths is None and "micro_batches" not in plan
    coupled, _ = _plan(["task=embedding", "model=tiny-bert", "trainer.micro_batch_size=2"])  # in-batch negatives
    assert coupled.sampler.step_rows == 0


@pytest.mark.parametrize("grouped", ["false", "true"])
def test_sorted_micro_batches_train_as_the_whole_batch(tmp_path, grouped):
    """Sorted within steps (random batches) or cut from equal-token steps (NER's grouped batches): a step's rows are
    the same however the memory plan splits it, so the losses are the unsplit run's."""
    args = [
        "train",
        f"trainer.group_by_length={grouped}",
        "task=ner",
        "model=tiny-bert",
        "task.data.max_train_samples=96",
        "task.data.max_eval_samples=16",
        "trainer.batch_size=16",
        "trainer.max_steps=6",
        "trainer.log_every=1",
        "trainer.eval_every=100",
        "model.dropout=0.0",
        "trainer.progress=false",
        "optimizer.lr=1e-3",
    ]
    losses = {}
    for micro in ("16", "4"):
        (tmp_path / micro).mkdir()
        cli([*args, f"trainer.micro_batch_size={micro}"], cwd=tmp_path / micro)
        lines = (only_run_dir(tmp_path / micro / "outputs") / "metrics.jsonl").read_text().splitlines()
        losses[micro] = [r["train/loss"] for r in map(json.loads, lines) if "train/loss" in r]
    assert len(losses["4"]) == 6
    assert losses["4"] == pytest.approx(losses["16"], rel=1e-5)  # float sums in another order: the last bits differ
