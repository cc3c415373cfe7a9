"""Multiple choice (task=multiple-choice): trains through the real CLI on SWAG-style and list-column rows, saves a
head AutoModelForMultipleChoice loads, `llmft generate` prints the choice and its probabilities, accuracy equals a
hand count over gathered shards, and bad rows (endings of different counts, a label out of range, an empty ending)
are one line naming the row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import cli, only_run_dir, write_jsonl

ARGS = [
    "task=multiple-choice",
    "model=tiny-bert",
    "model.dropout=0.0",
    "trainer.batch_size=4",
    "trainer.max_steps=4",
    "trainer.eval_every=2",
    "trainer.progress=false",
    "optimizer.lr=1e-3",
]


def _arc_rows(n: int) -> list[dict]:
    """ARC/MMLU-like rows: one context column and a list column of endings."""
    return [
        {"question": f"Which colour is item {i}?", "choices": ["red", "green", "blue paint", f"none of {i}"], "answer": i % 4}
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def list_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mc")
    data = write_jsonl(root / "arc.jsonl", _arc_rows(40))
    cli(
        ["train", *ARGS, f"task.data.path={data}", "task.data.text_columns=[question]", "task.data.label_column=answer"], cwd=root
    )
    return only_run_dir(root / "outputs")


def test_list_column_endings_train_and_save_a_multiple_choice_head(list_run):
    plan = json.loads((list_run / "run.json").read_text())["plan"]
    assert "4 endings" in plan["format"]
    evals = [json.loads(x) for x in (list_run / "metrics.jsonl").read_text().splitlines() if "eval/accuracy" in x]
    assert len(evals) == 2 and all(0 <= e["eval/accuracy"] <= 1 for e in evals)
    chosen = json.loads((list_run / "eval.json").read_text())
    assert chosen["select_metric"] == "accuracy" and chosen["select_mode"] == "max"
    assert chosen["select_value"] == max(e["eval/accuracy"] for e in evals)
    assert {"accuracy", "loss", "samples"} <= set(json.loads((list_run / "eval.json").read_text())["metrics"])
    from transformers import AutoModelForMultipleChoice

    model = AutoModelForMultipleChoice.from_pretrained(list_run / "checkpoints" / "best")
    assert model.classifier.out_features == 1  # one score per (context, ending) pair


def test_generate_prints_the_choice_and_its_probabilities(list_run, tmp_path):
    rows = [{"question": "Which colour?", "choices": ["red", "green", "blue"]}, {"question": "Pick one", "choices": ["a", "b"]}]
    out = cli(["generate", f"run={list_run}", f"input={write_jsonl(tmp_path / 'rows.jsonl', rows)}"], cwd=tmp_path).stdout
    printed = [json.loads(x) for x in out.splitlines()]
    for row, p in zip(rows, printed):
        assert len(p["probabilities"]) == len(row["choices"]) and sum(p["probabilities"]) == pytest.approx(1.0)
        assert p["ending"] == row["choices"][p["choice"]] and p["probabilities"][p["choice"]] == max(p["probabilities"])
    prompt = json.dumps({"question": "Which colour?", "endings": ["red", "green"]})
    one = json.loads(cli(["generate", f"run={list_run}", f"prompt='{prompt}'"], cwd=tmp_path).stdout)  # quoted for Hydra
    assert one["choice"] in (0, 1) and len(one["probabilities"]) == 2
    refused = cli(["generate", f"run={list_run}", "prompt=just text"], cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "one JSON object" in refused.stderr


@pytest.mark.slow  # seconds-long; the default suite stays under 10 minutes on 2 cores
def test_bundled_swag_layout_is_prepared_as_batch_by_choices_by_tokens(tmp_path):
    proc = cli(["train", *ARGS, "trainer.dry_run=true"], cwd=tmp_path)
    assert "multiple choice (4 endings per row)" in proc.stdout + proc.stderr
    from transformers import AutoTokenizer

    from llmft.models import backbone
    from llmft.config import ModelConfig
    from llmft.tasks.multiple_choice import ChoiceCollator

    tokenizer = AutoTokenizer.from_pretrained(backbone.resolve(ModelConfig(name_or_path="builtin:tiny-bert"))[0])
    rows = [
        {"input_ids": [[1, 2], [1, 2, 3], [1]], "attention_mask": [[1, 1], [1, 1, 1], [1]], "labels": 2},
        {"input_ids": [[4], [4], [4, 5]], "attention_mask": [[1], [1], [1, 1]], "labels": 0},
    ]
    batch = ChoiceCollator(tokenizer)(rows)
    assert batch["input_ids"].shape == (2, 3, 3) and batch["labels"].tolist() == [2, 0]  # padded to this batch's longest
    assert batch["attention_mask"][1].sum().item() == 4


def test_accuracy_over_gathered_shards_equals_a_hand_count():
    from llmft.tasks import get_task
    from llmft.tasks.options import MultipleChoiceOptions

    task = get_task(MultipleChoiceOptions())
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.4, 0.4, 0.2], [0.1, 0.1, 0.8]])
    labels = np.array([0, 1, 1, 0, 2])  # right: rows 0, 2, 3 (a tie goes to the first), 4
    shards = [
        {"loss": 1.0, "n": 2, "probs": [probs[:2]], "labels": [labels[:2]]},
        {"loss": 2.0, "n": 3, "probs": [probs[2:]], "labels": [labels[2:]]},
    ]
    metrics = task.eval_metrics(shards)
    assert metrics["accuracy"] == pytest.approx(4 / 5) and metrics["loss"] == pytest.approx(3.0 / 5) and metrics["samples"] == 5


@pytest.mark.parametrize(
    "bad,expected",
    [
        ({"choices": ["red", "green"]}, "has 2 endings where the first row has 4"),
        ({"answer": 7}, "label 7 is not the index of one of its 4 endings"),
        ({"choices": ["red", "", "blue", "x"]}, "ending 1 is empty"),
    ],
)
def test_bad_rows_are_one_line_naming_the_row(tmp_path, bad, expected):
    rows = _arc_rows(20)
    rows[4].update(bad)
    data = write_jsonl(tmp_path / "arc.jsonl", rows)
    proc = cli(
        ["train", *ARGS, f"task.data.path={data}", "task.data.text_columns=[question]", "task.data.label_column=answer"],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert expected in proc.stderr and "line 5 of" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


MC = [
    "task=multiple-choice",
    "model=tiny-bert",
    "task.data.max_train_samples=48",
    "task.data.max_eval_samples=37",
    "trainer.batch_size=4",
    "optimizer.lr=1e-3",
]


@pytest.mark.slow  # ~8 s; resume is exercised per family in the slow suite, for every loop in the default one
def test_multiple_choice_stopped_and_resumed_equals_an_unbroken_run(tmp_path, monkeypatch):
    from test_regression import stopped_and_resumed_equals_unbroken

    assert "accuracy" in stopped_and_resumed_equals_unbroken([*MC, "trainer.max_steps=6"], tmp_path, monkeypatch)


@pytest.mark.slow  # a torchrun job
def test_multiple_choice_sharded_evaluation_equals_one_process(tmp_path):
    from test_regression import sharded_eval_equals_one_process

    sharded_eval_equals_one_process(MC[:4], ["accuracy", "loss"], tmp_path)
