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


@pytest.mark.slow
@pytest.mark.parametrize("cache, augment", [("false", 0), ("true", 0), ("false", 1)], ids=["live", "cached", "transfer-rows"])
def test_two_processes_distill_as_one_with_the_same_global_batch(tmp_path, teacher, cache, augment):
    args = [
        *COMMON,
        "finetune=distill",
        f"finetune.teacher={teacher}",
        f"finetune.cache_teacher={cache}",
        f"finetune.augment={augment}",  # every process makes the same copies; each labels half
        "finetune.alpha=0.5",
        "model.num_layers=1",
        "trainer.max_steps=5",
        "trainer.log_every=1",
        "trainer.eval_every=5",
    ]
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    run_cli(["train", *args, "trainer.batch_size=8"], cwd=tmp_path / "one")
    proc = _torchrun([*args, "trainer.batch_size=4"], tmp_path / "two")
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-4000:]
    one, two = (only_run_dir(tmp_path / name / "outputs") for name in ("one", "two"))
    plan = json.loads((two / "run.json").read_text())["plan"]
    assert plan["processes"] == 2 and plan["finetune"] == "distill" and plan["train_examples"] == 96 * (1 + augment)
    assert len(_losses(two)) == 5 and _losses(two) == pytest.approx(_losses(one), abs=1e-5)
    m1, m2 = (json.loads((r / "eval.json").read_text())["metrics"] for r in (one, two))
    assert m2["accuracy"] == pytest.approx(m1["accuracy"], abs=1e-6)


@pytest.mark.slow
def test_two_accumulating_processes_distill_tags_with_transfer_rows_as_one(tmp_path):
    """NER (a teacher term per token), its transfer rows labelled and its cache filled in shares, each process
    accumulating two passes of 2 rows: the loss curve and F1 of one process with batch 8."""
    args = [
        "task=ner",
        *COMMON[1:],
        "finetune=distill",
        "finetune.teacher=tiny-bert",
        "finetune.cache_teacher=true",
        "finetune.augment=1",
        "finetune.alpha=0.5",
        "model.num_layers=1",
        "trainer.max_steps=4",
        "trainer.log_every=1",
        "trainer.eval_every=4",
    ]
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    run_cli(["train", *args, "trainer.batch_size=8"], cwd=tmp_path / "one")
    proc = _torchrun([*args, "trainer.batch_size=2", "trainer.grad_accum_steps=2"], tmp_path / "two")
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-4000:]
    one, two = (only_run_dir(tmp_path / name / "outputs") for name in ("one", "two"))
    plan = json.loads((two / "run.json").read_text())["plan"]
    assert plan["processes"] == 2 and plan["effective_batch_size"] == 8 and plan["transfer_rows"] == 96
    assert len(_losses(two)) == 4 and _losses(two) == pytest.approx(_losses(one), abs=1e-5)
    m1, m2 = (json.loads((r / "eval.json").read_text())["metrics"] for r in (one, two))
    assert m2["f1"] == pytest.approx(m1["f1"], abs=1e-6)
