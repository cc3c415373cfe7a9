"""Watching a run that is not on a terminal (issue 10, item 8): with output sent to a pipe, a plain progress line per
log interval on stderr, the same lines in the run folder's train.log, and no library noise a user cannot act on."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import cli, only_run_dir, run_cli

ESC = "\x1b"


def _train(root: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    """`llmft train` as a subprocess whose stdout/stderr are pipes (not a terminal), with its run folder."""
    proc = run_cli(["train", "trainer.save_last=false", *args], cwd=root)
    return proc, only_run_dir(root / "outputs")


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """A pretrained encoder (MiniLM-L6) given a new classification head, 6 steps logged every 2, with activation
    checkpointing (a call transformers 5 renamed)."""
    root = tmp_path_factory.mktemp("watch_minilm")
    return _train(
        root,
        "model=minilm-l6",
        "task=sentiment",
        "model.max_length=32",
        "task.data.max_train_samples=24",
        "task.data.max_eval_samples=8",
        "trainer.batch_size=4",
        "trainer.max_steps=6",
        "trainer.log_every=2",
        "trainer.gradient_checkpointing=true",
    )


@pytest.fixture(scope="module")
def rouge_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """A summarization run: its ROUGE metric imports absl, which logs INFO lines."""
    root = tmp_path_factory.mktemp("watch_t5")
    return _train(
        root,
        "model=tiny-t5",
        "task=summarization",
        "task.data.max_train_samples=8",
        "task.data.max_eval_samples=4",
        "trainer.batch_size=4",
        "trainer.max_steps=2",
        "trainer.log_every=1",
    )


def _progress_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("train step ")]


def test_off_a_terminal_progress_is_a_plain_line_per_log_interval(minilm_run):
    proc, _ = minilm_run
    lines = _progress_lines(proc.stderr)
    assert [line.split(" | ")[0] for line in lines] == ["train step 2/6", "train step 4/6", "train step 6/6"], proc.stderr
    for line in lines:
        for part in ("epoch 1", "loss ", "lr ", "samples/s", "tokens/s", "elapsed ", "eta "):
            assert part in line, line
    assert ESC not in proc.stderr and ESC not in proc.stdout  # no bar redraws, no colours
    assert "━" not in proc.stderr  # no final render of a rich bar either
    assert any(line.startswith("eval  step 6/6 | accuracy ") for line in proc.stderr.splitlines()), proc.stderr


def test_train_log_has_the_progress_lines_and_warnings(minilm_run):
    proc, run_dir = minilm_run
    log = (run_dir / "train.log").read_text()
    for line in _progress_lines(proc.stderr):
        assert line in log
    assert "eval  step 6/6 | accuracy " in log
    assert "newly initialised: classifier.bias, classifier.weight (trained from scratch)" in log
    assert "test metrics of the best checkpoint (step 6)" in log


def test_load_report_is_one_line_naming_the_new_head(minilm_run):
    proc, _ = minilm_run
    assert "newly initialised: classifier.bias, classifier.weight (trained from scratch)" in proc.stderr.splitlines()
    assert "LOAD REPORT" not in proc.stderr and "MISSING" not in proc.stderr
    # our own calls use transformers' current API, and its "checkpointing turns the cache off" note is not shown
    assert "FutureWarning" not in proc.stderr and "deprecated" not in proc.stderr, proc.stderr
    assert "incompatible with gradient checkpointing" not in proc.stderr


def test_absl_info_lines_are_not_shown(rouge_run):
    proc, run_dir = rouge_run
    for text in (proc.stdout, proc.stderr, (run_dir / "train.log").read_text()):
        assert "[absl]" not in text and "Using default tokenizer" not in text
    assert len(_progress_lines(proc.stderr)) == 2, proc.stderr


def test_top_level_help_separates_every_verb_from_its_text(tmp_path):
    out = cli(["--help"], cwd=tmp_path).stdout
    assert "sweep-reportrank" not in out
    assert "  sweep-report  rank the jobs" in out


def test_help_piped_into_a_reader_that_stops_early_ends_quietly():
    """`llmft --help | head`: a reader gone before the help is written ends the help without a BrokenPipeError traceback."""
    import subprocess
    import sys

    proc = subprocess.run(f"{sys.executable} -m llmft --help | true", shell=True, capture_output=True, text=True, timeout=60)
    assert proc.stderr == ""  # the reader left without reading: no BrokenPipeError traceback
