"""Dry run, model cards, and loggers."""

from __future__ import annotations

import json
import re

import pytest

from conftest import FAST, cli, run_cli


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path):
    proc = cli(["train", "--dry-run", *FAST, "trainer.grad_accum_steps=2"], cwd=tmp_path)
    for text in (
        "dry run",
        "trainable_parameters",
        "effective_batch_size",
        "optimizer_steps",
        "warmup_steps",
        "estimated_peak_gib",
        "micro_batch_size",
        "train_label_counts",
        "data/train",
    ):
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

    cli(["train", *FAST, "logger=tensorboard", "trainer.log_every=1"], cwd=tmp_path)
    events = next(tmp_path.glob("outputs/train/*/*/tensorboard"))
    acc = EventAccumulator(str(events))
    acc.Reload()
    assert {"train/loss", "train/lr", "eval/accuracy"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3]


def test_missing_tracker_package_is_one_line(tmp_path, monkeypatch):
    import sys

    from llmft.config import LoggerConfig, LoggerKind
    from llmft.errors import UserError
    from llmft.reporting.trackers import build_sink

    for module, kind, hint in (
        ("wandb", LoggerKind.wandb, "pip install wandb"),
        ("mlflow", LoggerKind.mlflow, "pip install mlflow"),
    ):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if the package were absent
        with pytest.raises(UserError, match=hint):
            build_sink(LoggerConfig(kind=kind), tmp_path, {})


@pytest.mark.slow  # ~11 s; the default suite stays under 10 minutes on 2 cores (CI runs it in the slow one)
def test_wandb_offline_run_records_metrics(tmp_path):
    pytest.importorskip("wandb")
    run_cli(
        ["train", *FAST, "logger=wandb", "logger.project=llmft-test"],
        cwd=tmp_path,
        env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"},
    )
    runs = list(tmp_path.glob("outputs/train/*/*/wandb/offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    data = runs[0].read_bytes()  # protobuf records: metric and config keys are stored as plain strings
    for key in (b"train/loss", b"eval/accuracy", b"optimizer"):
        assert key in data


def test_mlflow_records_metrics_and_params(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    cli(["train", *FAST, "logger=mlflow", "trainer.log_every=1"], cwd=tmp_path)
    db = next(tmp_path.glob("outputs/train/*/*/mlflow.db"))
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    run = mlflow.search_runs(search_all_experiments=True, output_format="list")[0]
    assert run.data.params["optimizer.lr"] == "5e-05" and run.data.params["model.name_or_path"] == "builtin:tiny-bert"
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in history] == [1, 2, 3]
    assert "eval_accuracy" in run.data.metrics
