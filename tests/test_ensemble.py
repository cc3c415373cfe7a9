"""Ensembles (#24.2): `llmft eval run=[a,b,c]` reports each member's metrics and the ensemble's, whose probabilities are
the members' mean (checked against each member's `llmft generate` output); `llmft generate run=[a,b]` prints the mean
probabilities; members with other labels are refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import FAST, cli, write_jsonl
from llmft.tasks.ensemble import average_prediction_partials

SENTIMENT = Path(__file__).resolve().parents[1] / "llmft" / "resources" / "sentiment"
NAMES = ["negative", "positive"]


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("ensemble")
    for seed in range(3):
        cli(["train", *FAST, f"seed={seed}", "optimizer.lr=1e-3", f"hydra.run.dir=m{seed}"], cwd=root)
    return [root / f"m{seed}" for seed in range(3)]


def _rows(tmp_path: Path, n: int = 32) -> Path:
    lines = (SENTIMENT / "test.jsonl").read_text().splitlines()[:n]
    return write_jsonl(tmp_path / "rows.jsonl", [json.loads(x) for x in lines])


def _probs(run: Path, rows: Path, cwd: Path) -> np.ndarray:
    printed = [json.loads(x) for x in cli(["generate", f"run={run}", f"input={rows}"], cwd=cwd).stdout.splitlines()]
    return np.array([[p["probabilities"][n] for n in NAMES] for p in printed])


def test_ensemble_eval_reports_members_and_the_mean_of_their_probabilities(members, tmp_path):
    rows = _rows(tmp_path)
    out = cli(["eval", f"run=[{','.join(map(str, members))}]", f"task.data.path={rows}", "hydra.run.dir=ev"], cwd=tmp_path).stdout
    result = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert list(result["members"]) == [str(m) for m in members] and "member 3" in out and "ensemble" in out
    labels = np.array([NAMES.index(json.loads(x)["label"]) for x in rows.read_text().splitlines()])
    each = [_probs(m, rows, tmp_path) for m in members]
    for member, p in zip(members, each):
        assert result["members"][str(member)]["loss"] == pytest.approx(
            -np.log(p[np.arange(len(labels)), labels]).mean(), abs=1e-4
        )
    mean = np.mean(each, axis=0)
    assert result["ensemble"]["loss"] == pytest.approx(-np.log(mean[np.arange(len(labels)), labels]).mean(), abs=1e-4)
    assert result["ensemble"]["accuracy"] == pytest.approx((mean.argmax(1) == labels).mean())


def test_ensemble_generate_prints_the_mean_probabilities(members, tmp_path):
    rows = _rows(tmp_path, 4)
    printed = [
        json.loads(x)
        for x in cli(["generate", f"run=[{members[0]},{members[1]}]", f"input={rows}"], cwd=tmp_path).stdout.splitlines()
    ]
    mean = (_probs(members[0], rows, tmp_path) + _probs(members[1], rows, tmp_path)) / 2
    for p, expected in zip(printed, mean):
        assert [p["probabilities"][n] for n in NAMES] == pytest.approx(expected.tolist(), abs=1e-6)
        assert p["label"] == NAMES[int(expected.argmax())] and p["score"] == pytest.approx(expected.max(), abs=1e-6)


def test_members_with_other_labels_are_refused_in_one_line(members, tmp_path):
    rows = [
        {"text": json.loads(x)["text"], "label": "good" if json.loads(x)["label"] == "positive" else "bad"}
        for x in (SENTIMENT / "train.jsonl").read_text().splitlines()[:64]
    ]
    data = write_jsonl(tmp_path / "other.jsonl", rows)
    cli(["train", *FAST, f"task.data.path={data}", "task.data.label_names=[bad,good]", "hydra.run.dir=other"], cwd=tmp_path)
    out = cli(["generate", f"run=[{members[0]},{tmp_path / 'other'}]", "prompt=fine"], cwd=tmp_path, check=False)
    assert out.returncode == 2 and "ensemble members must share labels" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_regression_members_average_their_scores():
    a = [{"labels": [np.array([1.0, 2.0])], "predictions": [np.array([0.0, 4.0])]}]
    b = [{"labels": [np.array([1.0, 2.0])], "predictions": [np.array([2.0, 2.0])]}]
    assert average_prediction_partials([a, b])[0]["predictions"][0].tolist() == [1.0, 3.0]
