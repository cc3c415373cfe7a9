"""Dry run, model cards, and loggers."""

from __future__ import annotations

import json
import re

import pytest

from conftest import FAST, run_cli


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path):
    proc = run_cli(["train", "--dry-run", *FAST, "trainer.grad_accum_steps=2"], cwd=tmp_path)
    for text in ("dry run", "trainable_parameters", "effective_batch_size", "optimizer_steps", "warmup_steps",
                 "estimated_memory_gib", "train_label_counts", "data/train"):
        assert text in proc.stdout
    assert re.search(r"effective_batch_size\s*│\s*64\b", proc.stdout)  # 32 x 2 accumulation steps
    assert not list(tmp_path.glob("outputs/**/checkpoints"))
    assert not list(tmp_path.glob("outputs/**/metrics.jsonl"))


def test_best_checkpoint_carries_a_model_card(tiny_run):
    card = (tiny_run / "checkpoints" / "best" / "README.md").read_text()
    result = json.loads((tiny_run / "eval.json").read_text())
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: text-classification")
    assert f"| accuracy | {result['metrics']['accuracy']:.4f} |" in card
    manifest = json.loads((tiny_run / "run.json").read_text())
    assert manifest["data_fingerprint"]["train"] in card
    assert "optimizer:" in card  # the training config


def test_tensorboard_logger_writes_readable_events(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_cli(["train", *FAST, "logger=tensorboard", "trainer.log_every=1"], cwd=tmp_path)
    events = next(tmp_path.glob("outputs/train/*/*/tensorboard"))
    acc = EventAccumulator(str(events))
    acc.Reload()
    assert {"train/loss", "train/lr", "eval/accuracy"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3]


def test_missing_tracker_package_is_one_line(tmp_path):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    proc = run_cli(["train", *FAST, "logger=wandb"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "pip install wandb" in proc.stderr
