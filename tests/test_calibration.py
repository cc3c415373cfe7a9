"""Calibration (#24.6): ECE (15 equal-width confidence bins) in every classifier's metrics, equal to a hand computation
over the probabilities `llmft generate` prints; `task.calibrate=true` fits a temperature on validation that lowers its
NLL, saves it with the checkpoint, and generate's probabilities use it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import FAST, TINY, cli, only_run_dir, write_jsonl
from llmft.evaluation.calibration import expected_calibration_error, fit_temperature, nll, scaled

SENTIMENT = Path(__file__).resolve().parents[1] / "llmft" / "resources" / "sentiment"


def test_ece_equals_a_hand_computation():
    probs = np.array([[0.95, 0.05], [0.15, 0.85], [0.25, 0.75], [0.65, 0.35], [0.38, 0.62]])
    labels = [0, 0, 1, 1, 1]  # right at 0.95, wrong at 0.85, right at 0.75, wrong at 0.65, right at 0.62
    # ten bins: (0.9,1] |1-0.95|; (0.8,0.9] |0-0.85|; (0.7,0.8] |1-0.75|; (0.6,0.7] two rows |0.5-0.635|
    hand = (0.05 + 0.85 + 0.25 + 2 * 0.135) / 5
    assert expected_calibration_error(labels, probs, bins=10) == pytest.approx(hand)
    assert expected_calibration_error([0, 1], np.array([[1.0, 0.0], [0.0, 1.0]])) == 0.0


def test_temperature_fit_lowers_the_nll_of_overconfident_probabilities():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    logits = rng.normal(size=(400, 3)) + 1.5 * np.eye(3)[labels]  # informative, then made overconfident below
    probs = scaled(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 0.25)
    t = fit_temperature(labels, probs)
    assert t > 2 and nll(labels, probs, t) < nll(labels, probs, 1.0) - 0.1
    assert expected_calibration_error(labels, scaled(probs, t)) < expected_calibration_error(labels, probs)


def _test_rows(tmp_path: Path, n: int = 48) -> Path:
    lines = (SENTIMENT / "test.jsonl").read_text().splitlines()[:n]
    return write_jsonl(tmp_path / "rows.jsonl", [json.loads(x) for x in lines])


def test_eval_ece_equals_the_hand_computation_over_generate_probabilities(tiny_run, tmp_path):
    rows = _test_rows(tmp_path)
    cli(["eval", f"run={tiny_run}", f"task.data.path={rows}", "hydra.run.dir=ev"], cwd=tmp_path)
    metrics = json.loads((tmp_path / "ev" / "eval.json").read_text())["metrics"]
    printed = [json.loads(x) for x in cli(["generate", f"run={tiny_run}", f"input={rows}"], cwd=tmp_path).stdout.splitlines()]
    probs = np.array([[p["probabilities"]["negative"], p["probabilities"]["positive"]] for p in printed])
    labels = [["negative", "positive"].index(json.loads(x)["label"]) for x in rows.read_text().splitlines()]
    assert metrics["ece"] == pytest.approx(expected_calibration_error(labels, probs), abs=1e-4)


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("calibrated")
    # 512 rows, 2 epochs: tiny-bert at lr 1e-3 is overconfident on validation well before TINY's 2048 rows
    cli(["train", "model=tiny-bert", "task.data.max_train_samples=512", *TINY[2:], "task.calibrate=true"], cwd=root)
    return only_run_dir(root / "outputs")


def test_calibrate_fits_a_temperature_that_lowers_validation_nll(calibrated_run):
    record = json.loads((calibrated_run / "checkpoints" / "best" / "calibration.json").read_text())
    assert record["fitted_on"] == "validation" and record["rows"] > 0 and record["temperature"] != 1.0
    assert record["nll_after"] < record["nll_before"]
    assert "ece" in json.loads((calibrated_run / "eval.json").read_text())["metrics"]


def test_generate_probabilities_use_the_saved_temperature(calibrated_run, tmp_path):
    best = calibrated_run / "checkpoints" / "best"
    t = json.loads((best / "calibration.json").read_text())["temperature"]
    args = ["generate", f"run={calibrated_run}", "prompt=A lovely and funny film."]
    calibrated = json.loads(cli(args, cwd=tmp_path).stdout)["probabilities"]
    shutil.move(best / "calibration.json", tmp_path / "calibration.json")
    try:
        raw = json.loads(cli(args, cwd=tmp_path).stdout)["probabilities"]
    finally:
        shutil.move(tmp_path / "calibration.json", best / "calibration.json")
    expected = scaled(np.array([[raw["negative"], raw["positive"]]]), t)[0]
    assert [calibrated["negative"], calibrated["positive"]] == pytest.approx(expected.tolist(), abs=1e-5)
    assert abs(calibrated["positive"] - raw["positive"]) > 1e-4


def test_multiple_choice_reports_ece_and_calibrates(tmp_path):
    rows = [
        {"question": f"Which colour is item {i}?", "choices": ["red", "green", "blue", f"none {i}"], "answer": i % 4}
        for i in range(40)
    ]
    data = write_jsonl(tmp_path / "arc.jsonl", rows)
    cli(
        [
            "train",
            "task=multiple-choice",
            *FAST,
            f"task.data.path={data}",
            "task.data.text_columns=[question]",
            "task.data.label_column=answer",
            "task.calibrate=true",
            "trainer.batch_size=4",
        ],
        cwd=tmp_path,
    )
    run = only_run_dir(tmp_path / "outputs")
    assert "ece" in json.loads((run / "eval.json").read_text())["metrics"]
    assert json.loads((run / "checkpoints" / "best" / "calibration.json").read_text())["temperature"] > 0


def test_calibrate_is_refused_for_a_family_without_class_probabilities(tmp_path):
    out = cli(["train", "task=sts", *FAST, "task.calibrate=true"], cwd=tmp_path, check=False)
    assert out.returncode == 2 and "task.calibrate=true needs class probabilities" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
