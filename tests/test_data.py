"""Data from local files: formats, columns, sentence pairs, labels, carved splits, clear errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import FAST, only_run_dir, cli, write_jsonl
from llmft.config import DataConfig
from llmft.data.loading import load_raw, named_splits
from llmft.errors import UserError


def _rows(n: int) -> list[dict]:
    return [
        {"premise": f"sentence number {i}", "hypothesis": f"claim {i % 7}", "label": ["yes", "no", "maybe"][i % 3]}
        for i in range(n)
    ]


def _csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_local_file_formats_and_carved_splits_are_fixed(tmp_path, fmt):
    rows = _rows(100)
    path = tmp_path / f"data.{fmt}"
    if fmt == "csv":
        _csv(path, rows)
    elif fmt == "jsonl":
        write_jsonl(path, rows)
    else:
        import pandas as pd

        pd.DataFrame(rows).to_parquet(path)
    cfg = DataConfig(path=str(path), text_columns=["premise", "hypothesis"], carve_ratio=0.2)
    splits = named_splits(load_raw(cfg), cfg)
    assert (len(splits["train"]), len(splits["eval"]), len(splits["test"])) == (64, 20, 16)
    again = named_splits(load_raw(cfg), cfg)
    assert again["test"]["premise"] == splits["test"]["premise"]  # same seed, same carve
    assert not set(splits["test"]["premise"]) & set(splits["train"]["premise"])


def test_folder_with_split_files(tmp_path):
    for split, n in (("train", 30), ("validation", 10), ("test", 12)):
        write_jsonl(tmp_path / f"{split}.jsonl", _rows(n))
    cfg = DataConfig(path=str(tmp_path))
    splits = named_splits(load_raw(cfg), cfg)
    assert (len(splits["train"]), len(splits["eval"]), len(splits["test"])) == (30, 10, 12)


def test_missing_file_and_unknown_split_name(tmp_path):
    with pytest.raises(UserError, match="data file not found: .*nope.csv"):
        load_raw(DataConfig(path=str(tmp_path / "nope.csv")))
    write_jsonl(tmp_path / "train.jsonl", _rows(10))
    with pytest.raises(UserError, match="no training.<csv"):
        load_raw(DataConfig(path=str(tmp_path), train_split="training"))
    cfg = DataConfig(path="some/hub-id", train_split="training")
    with pytest.raises(UserError, match="has no split 'training'; it has: train"):
        named_splits(load_raw(DataConfig(path=str(tmp_path))), cfg)


def test_sentence_pairs_with_string_labels_train_end_to_end(tmp_path):
    data = _csv(tmp_path / "nli.csv", _rows(120))
    cli(
        ["train", "task=classification", f"task.data.path={data}", "task.data.text_columns=[premise,hypothesis]", *FAST],
        cwd=tmp_path,
    )
    run = only_run_dir(tmp_path / "outputs")
    plan = json.loads((run / "run.json").read_text())["plan"]
    assert plan["labels"] == ["maybe", "no", "yes"]  # read from the data, sorted
    assert plan["train_examples"] == 97  # 120 minus 12 carved for eval, minus 11 (10% of 108) for test
    result = json.loads((run / "eval.json").read_text())
    assert result["select_metric"] == "f1_macro" and "roc_auc" in result["metrics"]  # one-vs-rest for 3 classes
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"premise": "a", "hypothesis": "b"}])
    out = cli(["generate", f"run={run}", f"input={pairs}"], cwd=tmp_path).stdout
    assert json.loads(out.strip().splitlines()[-1])["label"] in ("maybe", "no", "yes")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["task.data.path=missing.csv"], "data file not found: missing.csv"),
        (["task.data.text_columns=[sentence]"], "column 'sentence' not found"),
        (["task.data.label_names=[yes,no]"], "label 'maybe' in the train split"),
        (["task.data.label_column=labl"], "column 'labl' not found in the train split"),
    ],
)
def test_data_mistakes_are_one_line(tmp_path, overrides, message):
    _csv(tmp_path / "nli.csv", _rows(40))
    args = ["train", "task=classification", "task.data.path=nli.csv", "task.data.text_columns=[premise]", *FAST, *overrides]
    proc = cli(args, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr
