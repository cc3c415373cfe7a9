"""GLUE's STS-B folder as published (train.tsv, dev.tsv, an unlabeled test.tsv; tab-separated, quotes as text),
through the CLI in each byte variant: every labeled row is read, dev is the validation split, the unlabeled test file
is set aside and test carved from train."""

from __future__ import annotations

import json

import pytest

from conftest import cli, only_run_dir
from published import VARIANTS, copy_fixture, plan_rows

STS = ["task=sts", "model=tiny-bert", "trainer.progress=false"]


@pytest.mark.parametrize("kind", VARIANTS)
def test_glue_stsb_folder_reads_every_row(tmp_path, kind):
    folder = copy_fixture("stsb", tmp_path / "STS-B", kind)
    proc = cli(["train", *STS, f"task.data.path={folder}", "--dry-run"], cwd=tmp_path)
    rows = plan_rows(proc.stdout)
    assert rows["eval"] == 4 and rows["train"] + rows["test"] == 16, proc.stdout  # dev.tsv; test carved from train.tsv
    assert "test.tsv has no 'score' column" in proc.stderr, proc.stderr


def test_glue_stsb_trains_and_scores(tmp_path):
    folder = copy_fixture("stsb", tmp_path / "STS-B", "crlf")
    cli(["train", *STS, f"task.data.path={folder}", "trainer.max_steps=2", "trainer.batch_size=4"], cwd=tmp_path)
    metrics = json.loads((only_run_dir(tmp_path / "outputs") / "eval.json").read_text())["metrics"]
    assert "pearson" in metrics and "spearman" in metrics, metrics
