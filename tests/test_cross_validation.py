"""k-fold cross-validation (#24.1): `trainer.cv_folds=k` trains k run folders whose held-out folds are disjoint, cover
every train row and keep the label proportions; the summary gives every metric's mean ± std and the per-fold table
(CSV too); `task.data.fold` composes with `-m` and the sweep ranks configurations by their fold mean; a family without
labels (regression) gets plain shuffled folds."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from conftest import FAST, cli, write_jsonl
from llmft.data.folds import assign


def _sentiment_folder(folder: Path) -> Path:
    """45 train rows (30 positive, 15 negative) and a test file; no validation file (it would be carved off train)."""
    folder.mkdir()
    rows = [
        {"text": f"review number {i} was {'great' if i % 3 else 'awful'}", "label": "positive" if i % 3 else "negative"}
        for i in range(45)
    ]
    write_jsonl(folder / "train.jsonl", rows)
    write_jsonl(folder / "test.jsonl", rows[:10])
    return folder


def test_folds_are_disjoint_cover_every_row_and_keep_label_proportions():
    labels = ["a"] * 50 + ["b"] * 20 + ["c"] * 7
    fold = assign(len(labels), 5, seed=3, strata=labels)
    assert sorted(np.bincount(fold).tolist()) in ([15, 15, 15, 16, 16],)
    for name, count in (("a", 50), ("b", 20), ("c", 7)):
        per_fold = np.bincount(fold[np.array(labels) == name], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1 and per_fold.sum() == count
    assert np.bincount(assign(10, 3, seed=0), minlength=3).tolist() in ([4, 3, 3], [3, 4, 3], [3, 3, 4])


def test_cv_folds_train_a_run_per_fold_and_summarise(tmp_path):
    data = _sentiment_folder(tmp_path / "data")
    out = cli(["train", *FAST, f"task.data.path={data}", "trainer.cv_folds=3", "hydra.run.dir=cv"], cwd=tmp_path).stdout
    held = []
    for i in range(3):
        carve = json.loads((tmp_path / "cv" / f"fold-{i}" / "splits.json").read_text())
        assert set(carve["carved"]) == {"eval"}
        held.append(carve["carved"]["eval"]["rows"])
        negatives = sum(1 for r in held[-1] if r % 3 == 0)
        assert (len(held[-1]), negatives) == (15, 5)  # stratified: a third negative, as in train
    assert sorted(r for rows in held for r in rows) == list(range(45))  # disjoint and covering
    summary = json.loads((tmp_path / "cv" / "cv.json").read_text())
    accuracies = [row["eval/accuracy"] for row in summary["per_fold"]]
    assert summary["mean"]["eval/accuracy"] == np.mean(accuracies)
    assert summary["std"]["eval/accuracy"] == np.std(accuracies, ddof=1)
    assert "test/accuracy" in summary["mean"] and "test/ece" in summary["mean"]
    table = list(csv.reader((tmp_path / "cv" / "cv_summary.csv").open()))
    assert [r[0] for r in table[1:]] == ["0", "1", "2", "mean", "std"]
    assert "eval/accuracy: " in out and " ± " in out
    scored = cli(["eval", f"run={tmp_path / 'cv' / 'fold-1'}", "split=validation", "hydra.run.dir=ev"], cwd=tmp_path)
    assert "15 rows (carved from train.jsonl and held out" in scored.stderr  # the run's own held-out fold


def test_fold_sweep_ranks_configurations_by_their_fold_mean(tmp_path):
    data = _sentiment_folder(tmp_path / "data")
    cli(
        ["train", "-m", *FAST, f"task.data.path={data}", "task.data.folds=2", "task.data.fold=0,1", "optimizer.lr=1e-3,1e-4"],
        cwd=tmp_path,
    )
    sweep = next(tmp_path.glob("outputs/train-multirun/*/*"))
    ranked = list(csv.DictReader((sweep / "folds.csv").open()))
    assert sorted(r["overrides"] for r in ranked) == ["optimizer.lr=0.0001", "optimizer.lr=0.001"]
    assert all(r["folds"] == "2" for r in ranked) and float(ranked[0]["mean"]) >= float(ranked[1]["mean"])


def test_regression_cross_validates_with_shuffled_folds(tmp_path):
    rows = [{"sentence1": f"a cat {i}", "sentence2": f"a dog {i % 5}", "score": float(i % 5)} for i in range(24)]
    data = write_jsonl(tmp_path / "sts.jsonl", rows)
    cli(
        [
            "train",
            "task=regression",
            *FAST,
            f"task.data.path={data}",
            "task.data.text_columns=[sentence1,sentence2]",
            "task.data.label_column=score",
            "trainer.cv_folds=2",
            "hydra.run.dir=cv",
        ],
        cwd=tmp_path,
    )
    summary = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert summary["folds"] == 2 and "eval/mse" in summary["mean"]


def test_a_fold_without_folds_is_one_line(tmp_path):
    out = cli(["train", *FAST, "task.data.fold=1"], cwd=tmp_path, check=False)
    assert out.returncode == 2 and "task.data.folds takes k >= 2" in out.stderr
