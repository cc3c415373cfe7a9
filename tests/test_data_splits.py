"""Validation and test splits carved from one train file stay the same rows in every verb that scores them (issue 10,
item 1), and tiny carved splits are counted and flagged at train start (item 7). Through the CLI, on files the tests
write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli, only_run_dir, write_jsonl
from llmft.paths import resources_dir

FAST = [
    "model=tiny-bert",
    "task=sentiment",
    "trainer.epochs=1",
    "trainer.max_steps=4",
    "trainer.batch_size=16",
    "trainer.eval_every=2",
    "trainer.progress=false",
    "model.dropout=0.0",
    "optimizer.lr=1e-3",
]


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
    run, _, train_output = one_file_run
    assert "data: train 243 rows, validation 30 rows (carved from train), test 27 rows (carved from train)" in " ".join(
        train_output.split()
    )
    assert "warning: the" not in train_output  # 30 and 27 rows: enough to measure something
    result, output = _eval(run, tmp_path)
    written = json.loads((run / "eval.json").read_text())["metrics"]
    assert result["metrics"] == written  # the same rows, so the very same numbers
    assert written["samples"] == 27  # 300 rows: 30 carved for validation, then 27 of the other 270 for test
    assert result["rows"] == 27 and "scores the test split: 27 rows (carved from reviews.jsonl and held out" in " ".join(
        output.split()
    )


def test_eval_on_validation_scores_the_carved_validation_rows_only(one_file_run, tmp_path):
    run, _, _ = one_file_run
    result, _ = _eval(run, tmp_path, "split=validation")
    assert result["metrics"]["samples"] == 30
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    best_step = json.loads((run / "eval.json").read_text())["best_step"]
    at_best = next(r for r in logged if r["step"] == best_step and "eval/accuracy" in r)
    assert result["metrics"]["accuracy"] == at_best["eval/accuracy"]  # the best checkpoint on the same validation rows
    assert result["metrics"]["loss"] == pytest.approx(at_best["eval/loss"], rel=1e-6)


def test_eval_on_train_scores_what_the_run_trained_on(one_file_run, tmp_path):
    run, _, _ = one_file_run
    result, _ = _eval(run, tmp_path, "split=train")
    assert result["metrics"]["samples"] == 243  # the 300 rows less the 57 held out


def test_eval_refuses_a_changed_file_and_scores_a_whole_file_when_asked(one_file_run, tmp_path):
    run, data, _ = one_file_run
    original = data.read_text(encoding="utf-8")
    try:
        data.write_text('{"text": "A new first line.", "label": "positive"}\n' + original, encoding="utf-8")  # rows shift by one
        proc = cli(["eval", f"run={run}"], cwd=tmp_path, check=False)
        assert proc.returncode == 2 and "changed since run" in proc.stderr and "Traceback" not in proc.stderr
        other = tmp_path / "other.jsonl"
        other.write_text(data.read_text(encoding="utf-8"), encoding="utf-8")
        result, _ = _eval(run, tmp_path, f"task.data.path={other}")  # other data, as the message says: all of it is scored
        assert result["metrics"]["samples"] == 301 and result["origin"] == f"every row of {other}"
    finally:
        data.write_text(original, encoding="utf-8")


def test_tiny_file_reports_split_sizes_and_warns(tmp_path):
    data = write_jsonl(tmp_path / "six.jsonl", _sentiment_rows(6))
    proc = cli(["train", *FAST, f"task.data.path={data}", "trainer.max_steps=1"], cwd=tmp_path)
    output = " ".join((proc.stdout + proc.stderr).split())
    assert "data: train 4 rows, validation 1 row (carved from train), test 1 row (carved from train)" in output
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: the ")]
    assert len(warnings) == 2 and "validation split carved from train has only 1 row(s) (< 20)" in warnings[0]


def test_summarization_run_from_one_file_evals_to_its_own_test_metrics(tmp_path, capsys):
    with capsys.disabled():  # nltk/absl (ROUGE) keep the first stderr they meet: not a cli() call's buffer
        import rouge_score.rouge_scorer  # noqa: F401
    lines = (resources_dir() / "summarization" / "train.jsonl").read_text(encoding="utf-8").splitlines()[:60]
    data = write_jsonl(tmp_path / "xsum.jsonl", [json.loads(line) for line in lines])
    cli(
        [
            "train",
            "task=summarization",
            "model=tiny-t5",
            f"task.data.path={data}",
            "trainer.max_steps=2",
            "trainer.eval_every=2",
            "trainer.progress=false",
            "task.generation.max_new_tokens=8",
        ],
        cwd=tmp_path,
    )
    run = only_run_dir(tmp_path / "outputs")
    result, _ = _eval(run, tmp_path)
    assert result["rows"] == 6 and result["metrics"] == json.loads((run / "eval.json").read_text())["metrics"]


def test_data_files_are_given_on_the_command_line(tmp_path):
    """`task.data.data_files={train:a,test:b}` merges from the command line (a None Optional[dict] in the schema made
    Hydra/OmegaConf crash with a traceback); a value of the wrong shape is one line."""
    train, test = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_jsonl(train, _sentiment_rows(60))
    write_jsonl(test, _sentiment_rows(20))
    proc = cli(["train", *FAST, f"task.data.data_files={{train:{train},test:{test}}}"], cwd=tmp_path)
    assert "test 20 rows" in " ".join((proc.stdout + proc.stderr).split())
    bad = cli(["train", *FAST, "task.data.data_files=[a.csv]"], cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "task.data.data_files takes {split: file}" in bad.stderr
