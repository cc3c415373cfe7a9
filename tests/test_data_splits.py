"""Validation and test splits carved from one train file stay the same rows in every verb that scores them (issue 10,
item 1), and tiny carved splits are counted and flagged at train start (item 7). Through the CLI, on files the tests
write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli, only_run_dir, write_jsonl
from llmft.paths import resources_dir

FAST = ["model=tiny-bert", "task=sentiment", "trainer.epochs=1", "trainer.max_steps=4", "trainer.batch_size=16",
        "trainer.eval_every=2", "trainer.progress=false", "model.dropout=0.0", "optimizer.lr=1e-3"]


def _sentiment_rows(n: int) -> list[dict]:
    lines = (resources_dir() / "sentiment" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:n]]


@pytest.fixture(scope="module")
def one_file_run(tmp_path_factory) -> tuple[Path, Path, str]:
    """A tiny run trained from one file (validation and test carved from it): (run folder, data file, train stdout)."""
    root = tmp_path_factory.mktemp("one_file")
    data = write_jsonl(root / "reviews.jsonl", _sentiment_rows(300))
    proc = cli(["train", *FAST, f"task.data.path={data}"], cwd=root)
    return only_run_dir(root / "outputs"), data, proc.stdout + proc.stderr


def _eval(run: Path, cwd: Path, *args: str) -> tuple[dict, str]:
    out = cwd / "ev"
    proc = cli(["eval", f"run={run}", f"hydra.run.dir={out}", *args], cwd=cwd)
    return json.loads((out / "eval.json").read_text()), proc.stdout + proc.stderr


def test_eval_of_a_one_file_run_reproduces_its_test_metrics_exactly(one_file_run, tmp_path):
    run, _, _ = one_file_run
    result, output = _eval(run, tmp_path)
    written = json.loads((run / "eval.json").read_text())["metrics"]
    assert result["metrics"] == written  # the same rows, so the very same numbers
    assert written["samples"] == 27  # 300 rows: 30 carved for validation, then 27 of the other 270 for test
    assert result["rows"] == 27 and "scores the test split: 27 rows (carved from reviews.jsonl and held out" in " ".join(output.split())


def test_eval_on_validation_scores_the_carved_validation_rows_only(one_file_run, tmp_path):
    run, _, _ = one_file_run
    result, _ = _eval(run, tmp_path, "split=validation")
    assert result["metrics"]["samples"] == 30
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    best_step = json.loads((run / "eval.json").read_text())["best_step"]
    at_best = next(r for r in logged if r["step"] == best_step and "eval/accuracy" in r)
    assert result["metrics"]["accuracy"] == at_best["eval/accuracy"]  # the best checkpoint on the same validation rows
    assert result["metrics"]["loss"] == pytest.approx(at_best["eval/loss"], rel=1e-6)
