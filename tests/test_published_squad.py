"""SQuAD in the flat layout transformers' run_qa.py reads ({"version", "data": [{id, question, context, answers}]}),
through the CLI: told by its content, or named by task.data.field; errors name the file the rows came from."""

from __future__ import annotations

import json

import pytest

from conftest import cli, only_run_dir
from published import VARIANTS, copy_fixture, plan_rows

QA = ["task=qa", "model=tiny-bert", "model.max_length=128", "trainer.progress=false"]
ROWS = 16  # records in tests/fixtures/squad_run_qa/sample.json


@pytest.mark.parametrize("kind", VARIANTS)
def test_run_qa_layout_reads_one_row_per_record(tmp_path, kind):
    sample = copy_fixture("squad_run_qa/sample.json", tmp_path / "sample.json", kind)
    files = f"task.data.data_files={{train:{sample},validation:{sample},test:{sample}}}"
    proc = cli(["train", *QA, files, "--dry-run"], cwd=tmp_path)
    assert plan_rows(proc.stdout) == {"train": ROWS, "eval": ROWS, "test": ROWS}, proc.stdout


def test_field_option_names_the_key_and_trains(tmp_path):
    sample = copy_fixture("squad_run_qa/sample.json", tmp_path / "squad.json")
    cli(
        ["train", *QA, f"task.data.path={sample}", "task.data.field=data", "trainer.max_steps=2", "trainer.batch_size=8"],
        cwd=tmp_path,
    )
    stats = json.loads((only_run_dir(tmp_path / "outputs") / "run.json").read_text())["plan"]["data"]
    assert sum(stats[role]["rows"] for role in ("train", "eval", "test")) == ROWS, stats  # carved from the 16 records


def test_field_option_reads_any_rows_under_the_key(tmp_path):
    rows = [{"text": f"review {i} {'good' if i % 2 else 'bad'}", "label": i % 2} for i in range(40)]
    (tmp_path / "reviews.json").write_text(json.dumps({"version": 1, "rows": rows}), encoding="utf-8")
    proc = cli(
        ["train", "model=tiny-bert", f"task.data.path={tmp_path / 'reviews.json'}", "task.data.field=rows", "--dry-run"],
        cwd=tmp_path,
    )
    assert sum(plan_rows(proc.stdout).values()) == 40, proc.stdout


def test_one_object_file_says_which_field_to_set(tmp_path):
    rows = [{"q": f"question {i}", "c": "a context"} for i in range(8)]
    (tmp_path / "qa.json").write_text(json.dumps({"version": 1, "data": rows}), encoding="utf-8")
    proc = cli(["train", *QA, f"task.data.data_files={{train:{tmp_path / 'qa.json'}}}"], cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "qa.json" in line and "task.data.field=data" in line and "builtin:qa" not in line, line


def test_missing_column_names_the_data_file_not_the_default_path(tmp_path):
    rows = [{"q": f"question {i}", "c": "a context"} for i in range(8)]
    (tmp_path / "qa.json").write_text(json.dumps({"data": rows}), encoding="utf-8")
    files = f"task.data.data_files={{train:{tmp_path / 'qa.json'}}}"
    proc = cli(["train", *QA, files, "task.data.field=data"], cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "column 'question' not found" in line and "qa.json" in line and "builtin:qa" not in line, line


def test_field_missing_from_the_file_is_one_line(tmp_path):
    sample = copy_fixture("squad_run_qa/sample.json", tmp_path / "sample.json")
    proc = cli(["train", *QA, f"task.data.path={sample}", "task.data.field=rows"], cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "task.data.field=rows" in line and "version, data" in line, line


def test_official_nested_layout_with_a_byte_order_mark(tmp_path):
    context = "Kelport was founded in 1412 by fishermen."
    qas = [
        {"id": str(i), "question": "When was Kelport founded?", "answers": [{"text": "1412", "answer_start": 23}]}
        for i in range(12)
    ]
    document = {"version": "1.1", "data": [{"title": "Kelport", "paragraphs": [{"context": context, "qas": qas}]}]}
    (tmp_path / "train-v1.1.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(document).encode())
    proc = cli(["train", *QA, f"task.data.path={tmp_path / 'train-v1.1.json'}", "--dry-run"], cwd=tmp_path)
    assert sum(plan_rows(proc.stdout).values()) == 12, proc.stdout
