"""Packing for causal-LM training: rows fill up without overflow, each example attends only to itself, and the
summed loss over a packed data set equals the unpacked one (the same config, built through the real path)."""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import only_run_dir, cli
from llmft.cli import register_recipes
from llmft.commands.common import to_typed
from llmft.cli import register_configs
from llmft.config import TrainConfig
from llmft.data.packing import bins_best_fit
from llmft.paths import conf_dir

register_configs()
register_recipes()


def _parts(overrides: list[str]):
    from llmft.commands.setup import build_run

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return build_run(to_typed(cfg, TrainConfig))


def test_best_fit_places_every_example_once_within_capacity():
    lengths = [int(x) for x in torch.randint(1, 60, (500,), generator=torch.Generator().manual_seed(0))]
    rows = bins_best_fit(lengths, 64)
    placed = sorted(i for row in rows for i in row)
    assert placed == list(range(500))
    assert all(sum(lengths[i] for i in row) <= 64 for row in rows)
    assert sum(lengths) / (64 * len(rows)) > 0.95  # rows come out nearly full


@torch.no_grad()
def _summed_loss(parts) -> tuple[float, int, int]:
    parts.model.eval()
    total, items, rows = 0.0, 0, 0
    for batch in parts.train_loader:
        total += float(parts.task.loss_sum(parts.model, batch))
        items += parts.task.count(batch)
        rows += len(batch["input_ids"])
    return total, items, rows


def test_packed_loss_equals_unpacked_and_examples_do_not_see_each_other():
    base = ["task=sft", "model=tiny-gpt2", "model.dropout=0.0", "task.data.max_train_samples=96", "model.max_length=128"]
    plain_total, plain_items, plain_rows = _summed_loss(_parts(base))
    packed = _parts([*base, "task.packing=true"])
    total, items, rows = _summed_loss(packed)
    assert items == plain_items  # the same supervised tokens: none lost at example boundaries, none added
    assert total == pytest.approx(plain_total, rel=1e-5)
    assert rows < plain_rows / 3  # several examples per row
    batch = next(iter(packed.train_loader))
    assert "attention_mask" not in batch and int((batch["position_ids"] == 0).sum()) > len(batch["position_ids"])


def test_packing_trains_from_the_cli_and_is_refused_where_it_cannot_hold(tmp_path):
    cli(
        [
            "train",
            "task=textgen",
            "model=tiny-gpt2",
            "task.packing=true",
            "trainer.group_by_length=true",
            "task.data.max_train_samples=256",
            "task.data.max_eval_samples=32",
            "trainer.max_steps=12",
            "trainer.log_every=4",
            "trainer.eval_every=12",
            "trainer.progress=false",
            "optimizer.lr=3e-3",
        ],
        cwd=tmp_path,
    )
    run = only_run_dir(tmp_path / "outputs")
    losses = [r["train/loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "train/loss" in r]
    assert losses[-1] < losses[0]
    plan = json.loads((run / "run.json").read_text())["plan"]
    assert plan["packing"] is True and plan["data"]["train"]["packed_rows"] < plan["data"]["train"]["rows"]
    proc = cli(
        ["train", "task=sentiment", "model=tiny-bert", "task.packing=true", "trainer.max_steps=1"], cwd=tmp_path, check=False
    )
    assert proc.returncode == 2 and "packing=true is for decoder-only" in proc.stderr
