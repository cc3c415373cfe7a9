"""NER ensembles (#24.2): `llmft eval run=[a,b]` averages the members' per-word tag probabilities and reports the
ensemble's entity F1 beside each member's; `llmft generate run=[a,b]` prints the entities of the mean probabilities,
the same entities as one run's `generate` when the members agree; averaging can overturn a word's tag."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import cli
from llmft.tasks.word_ensemble import average_word_partials, entities_of

NER = [
    "task=ner",
    "model=tiny-bert",
    "model.dropout=0.0",
    "trainer.progress=false",
    "task.data.max_train_samples=64",
    "task.data.max_eval_samples=24",
    "trainer.max_steps=2",
    "trainer.batch_size=8",
    "optimizer.lr=3e-3",
]
PROMPT = "Jordan Smith flew to Washington to meet Ford executives on Monday ."


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ner_ensemble")
    cli(["train", *NER, "hydra.run.dir=m0"], cwd=root)
    return root / "m0"


def test_ner_ensemble_of_a_run_with_itself_scores_as_the_run(ner_run, tmp_path):
    out = cli(["eval", f"run=[{ner_run},{ner_run}]", "hydra.run.dir=same"], cwd=tmp_path).stdout
    same = json.loads((tmp_path / "same" / "eval.json").read_text())
    assert "2-member ensemble" in out
    member = same["members"][str(ner_run)]
    assert member["samples"] == same["ensemble"]["samples"] == 24
    for key in ("f1", "precision", "recall", "accuracy", "loss", "tokens"):
        assert same["ensemble"][key] == pytest.approx(member[key], rel=1e-4), key


@pytest.mark.slow
def test_ner_ensemble_eval_reports_entity_f1_beside_each_member(ner_run, tmp_path):
    cli(["train", *NER, "seed=1", "hydra.run.dir=other"], cwd=tmp_path)
    a, b = ner_run, tmp_path / "other"
    out = cli(["eval", f"run=[{a},{b}]", "hydra.run.dir=ev"], cwd=tmp_path).stdout
    result = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert "member 2" in out and list(result["members"]) == [str(a), str(b)]
    assert {"f1", "precision", "recall", "accuracy", "loss"} <= set(result["ensemble"])
    assert result["ensemble"]["samples"] == result["members"][str(b)]["samples"] == 24
    pair = json.loads(cli(["generate", f"run=[{a},{b}]", f"prompt={PROMPT}"], cwd=tmp_path).stdout.splitlines()[-1])
    assert pair["text"] == PROMPT and all(e["word"] == PROMPT[e["start"] : e["end"]] for e in pair["entities"])


def test_ner_ensemble_generate_prints_the_entities_of_the_mean(ner_run, tmp_path):
    a = ner_run
    alone = json.loads(cli(["generate", f"run={a}", f"prompt={PROMPT}"], cwd=tmp_path).stdout.splitlines()[-1])
    twice = json.loads(cli(["generate", f"run=[{a},{a}]", f"prompt={PROMPT}"], cwd=tmp_path).stdout.splitlines()[-1])
    key = [(e["entity_group"], e["start"], e["end"]) for e in alone["entities"]]
    assert key  # the untrained head still tags some words: the grouping is compared with the pipeline's
    assert twice["text"] == PROMPT and key == [(e["entity_group"], e["start"], e["end"]) for e in twice["entities"]]
    assert [e["score"] for e in twice["entities"]] == pytest.approx([e["score"] for e in alone["entities"]], abs=1e-5)


def test_averaging_overturns_a_word_tag_and_groups_entities():
    names = ["O", "B-PER", "I-PER"]
    a = [
        {
            "loss": 0.0,
            "tokens": 2,
            "gold": [[1, 2]],
            "predicted": [[1, 0]],
            "probs": [np.array([[0.1, 0.8, 0.1], [0.5, 0.0, 0.5]])],
        }
    ]
    b = [
        {
            "loss": 0.0,
            "tokens": 2,
            "gold": [[1, 2]],
            "predicted": [[1, 0]],
            "probs": [np.array([[0.1, 0.8, 0.1], [0.4, 0.0, 0.6]])],
        }
    ]
    mean = average_word_partials([a, b])[0]
    assert mean["predicted"] == [[1, 2]] and mean["loss"] == pytest.approx(-np.log(0.8) - np.log(0.55))
    words = [
        {"start": 0, "end": 3, "probabilities": [0.1, 0.8, 0.1]},
        {"start": 4, "end": 7, "probabilities": [0.2, 0.1, 0.7]},
        {"start": 8, "end": 9, "probabilities": [0.9, 0.05, 0.05]},
    ]
    assert entities_of("Ann Lee .", words, names) == [
        {"entity_group": "PER", "score": pytest.approx(0.75), "word": "Ann Lee", "start": 0, "end": 7}
    ]
