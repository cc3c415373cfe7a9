"""The README's main job: `llmft train task=sentiment` on the offline defaults (slow: ~2-3 min on 2 cores)."""

from __future__ import annotations

import json

import pytest

from conftest import only_run_dir, run_cli


@pytest.mark.slow
def test_default_sentiment_job_reaches_090_test_accuracy(tmp_path):
    proc = run_cli(["train", "task=sentiment", "trainer.progress=false"], cwd=tmp_path, timeout=1800)
    run = only_run_dir(tmp_path / "outputs")
    result = json.loads((run / "eval.json").read_text())
    assert result["metrics"]["accuracy"] >= 0.90
    assert result["metrics"]["samples"] == 1000  # the whole bundled test split
    assert "accuracy" in proc.stdout  # the final table
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["plan"]["precision"] == "fp32"  # precision=auto on a CPU
