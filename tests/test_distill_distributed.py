"""finetune=distill under torchrun: every process holds the teacher (or, with finetune.cache_teacher=true, the cache
of its outputs, read back by each row's index), so 2 processes x batch 4 follow the loss curve of one process x
batch 8, with the live teacher, with the cached one, and with transfer rows (finetune.augment) each process makes; the
cache and the copies' labels are computed in shares, one per process, and gathered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import only_run_dir, run_cli
from test_distributed import _torchrun

COMMON = [
    "task=sentiment",
    "model=tiny-bert",
    "model.dropout=0.0",
    "task.data.max_train_samples=96",
    "task.data.max_eval_samples=32",
    "trainer.progress=false",
    "optimizer.lr=1e-3",
]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("teacher")
    run_cli(["train", *COMMON, "trainer.max_steps=6", "trainer.batch_size=16"], cwd=where)
    return only_run_dir(where / "outputs")


def _losses(run: Path) -> list[float]:
    return [r["train/loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "train/loss" in r]


def _one_and_two(tmp_path: Path, args: list[str], two: list[str]) -> tuple[dict, Path, Path]:
    """Run `args` distilled in one process with batch 8 and under torchrun with `two` (the same global batch): (the
    two-process plan, each run folder)."""
    distill = ["finetune=distill", "finetune.alpha=0.5", "model.num_layers=1", "trainer.log_every=1"]
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    run_cli(["train", *args, *distill, "trainer.batch_size=8"], cwd=tmp_path / "one")
    proc = _torchrun([*args, *distill, *two], tmp_path / "two")
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-4000:]
    one, two_run = (only_run_dir(tmp_path / name / "outputs") for name in ("one", "two"))
    return json.loads((two_run / "run.json").read_text())["plan"], one, two_run


def _metrics(run: Path) -> dict:
    return json.loads((run / "eval.json").read_text())["metrics"]


@pytest.mark.slow
@pytest.mark.parametrize("cache, augment", [("false", 0), ("true", 0), ("false", 1)], ids=["live", "cached", "transfer-rows"])
def test_two_processes_distill_as_one_with_the_same_global_batch(tmp_path, teacher, cache, augment):
    args = [*COMMON, f"finetune.teacher={teacher}", f"finetune.cache_teacher={cache}", f"finetune.augment={augment}"]
    # every process makes the same copies; each labels half of them
    plan, one, two = _one_and_two(tmp_path, [*args, "trainer.max_steps=5", "trainer.eval_every=5"], ["trainer.batch_size=4"])
    assert plan["processes"] == 2 and plan["finetune"] == "distill" and plan["train_examples"] == 96 * (1 + augment)
    assert len(_losses(two)) == 5 and _losses(two) == pytest.approx(_losses(one), abs=1e-5)
    assert _metrics(two)["accuracy"] == pytest.approx(_metrics(one)["accuracy"], abs=1e-6)


@pytest.mark.slow
def test_two_accumulating_processes_distill_tags_with_transfer_rows_as_one(tmp_path):
    """NER (a teacher term per token), its transfer rows labelled and its cache filled in shares, each process
    accumulating two passes of 2 rows: the loss curve and F1 of one process with batch 8."""
    args = ["task=ner", *COMMON[1:], "finetune.teacher=tiny-bert", "finetune.cache_teacher=true", "finetune.augment=1"]
    steps = ["trainer.max_steps=4", "trainer.eval_every=4"]
    plan, one, two = _one_and_two(tmp_path, [*args, *steps], ["trainer.batch_size=2", "trainer.grad_accum_steps=2"])
    assert plan["processes"] == 2 and plan["effective_batch_size"] == 8 and plan["transfer_rows"] == 96
    assert len(_losses(two)) == 4 and _losses(two) == pytest.approx(_losses(one), abs=1e-5)
    assert _metrics(two)["f1"] == pytest.approx(_metrics(one)["f1"], abs=1e-6)
