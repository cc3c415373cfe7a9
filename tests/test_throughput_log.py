"""train/samples_per_s as a user reads it in metrics.jsonl: measured over training time only (not the eval and the
checkpoint saves between two log records), and counting rows (an embedding pair is one sample, not two texts)."""

from __future__ import annotations

import json

from conftest import cli, only_run_dir, write_jsonl


def _train_records(root) -> list[dict]:
    lines = (only_run_dir(root / "outputs") / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "train/samples_per_s" in r]


def test_a_window_after_an_eval_measures_training_only(tmp_path):
    # a long eval (1024 rows) after step 4 and a save of the best checkpoint: the window of steps 5-6 trains as fast
    # as the window of steps 3-4 before it
    cli(
        [
            "train",
            "model=tiny-bert",
            "trainer.progress=false",
            "trainer.batch_size=8",
            "trainer.max_steps=6",
            "trainer.log_every=2",
            "trainer.eval_every=4",
            "trainer.save_every=4",
            "task.data.max_eval_samples=1024",
            "trainer.eval_batch_size=8",
        ],
        cwd=tmp_path,
    )
    speeds = {r["step"]: r["train/samples_per_s"] for r in _train_records(tmp_path)}
    assert set(speeds) == {2, 4, 6}, speeds
    assert speeds[6] > 0.4 * speeds[4], speeds  # before: ~0.1x (the eval's time counted as training)


def test_embedding_pairs_count_as_one_sample_each(tmp_path):
    # every text tokenizes to 5 tokens ([CLS] x y z [SEP]), 2 texts per pair: 10 tokens per sample
    rows = [{"anchor": "a b c", "positive": "d e f"} for _ in range(64)]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    cli(
        [
            "train",
            "task=embedding",
            "model=tiny-bert",
            f"task.data.path={data}",
            "trainer.progress=false",
            "trainer.batch_size=8",
            "trainer.max_steps=4",
            "trainer.log_every=2",
            "task.data.max_eval_samples=4",
        ],
        cwd=tmp_path,
    )
    records = _train_records(tmp_path)
    assert records
    for r in records:
        assert abs(r["train/tokens_per_s"] / r["train/samples_per_s"] - 10.0) < 1e-6, r  # before: 5 (a text per sample)
