"""Explanations (#24.3): `llmft explain` gives Integrated Gradients token attributions that add up to the score's
difference from the baseline (completeness, within 5%), puts the top attribution on a planted cue token, and writes
the HTML page, the PNG heatmap and the JSONL; a family it cannot explain is one line."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from conftest import FAST, TINY, cli, only_run_dir, write_jsonl

pytest.importorskip("captum")


def _explained(out_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (out_dir / "attributions.jsonl").read_text().splitlines()]


def test_attributions_are_complete_and_written(tiny_run, tmp_path):
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"text": "A lovely and funny film."}, {"text": "Dull, slow and far too long."}])
    out = cli(["explain", f"run={tiny_run}", f"input={rows}", "output_dir=ex"], cwd=tmp_path).stdout
    assert "wrote explanations.html" in out
    for item in _explained(tmp_path / "ex"):
        assert _complete(item)
        assert item["tokens"][0] == "[CLS]" and len(item["scores"]) == len(item["tokens"])
    assert (tmp_path / "ex" / "attributions.png").stat().st_size > 0
    assert "<span" in (tmp_path / "ex" / "explanations.html").read_text()


def test_the_planted_cue_gets_the_top_attribution(tmp_path):
    rng = random.Random(0)
    words = "the a film plot actor scene long short story music camera night city train road house".split()
    rows = []
    for i in range(600):
        text = [rng.choice(words) for _ in range(6)]
        if i % 2:
            text.insert(rng.randrange(7), "banana")
        rows.append({"text": " ".join(text), "label": "positive" if i % 2 else "negative"})
    data = write_jsonl(tmp_path / "cue.jsonl", rows)
    cli(["train", *TINY, f"task.data.path={data}", "task.data.label_names=[negative,positive]"], cwd=tmp_path)
    run = only_run_dir(tmp_path / "outputs")
    cli(["explain", f"run={run}", "prompt=the film banana had a long plot", "target=positive", "output_dir=ex"], cwd=tmp_path)
    item = _explained(tmp_path / "ex")[0]
    assert item["tokens"][max(range(len(item["scores"])), key=item["scores"].__getitem__)] == "banana"


def _complete(item: dict) -> bool:
    difference = item["score"] - item["baseline_score"]
    return abs(sum(item["scores"]) - difference) <= 0.05 * abs(difference)


def test_multiple_choice_explains_the_chosen_choice_over_its_own_input(tmp_path):
    rows = [{"question": f"q {i}", "choices": ["a cat", "the big red dog"], "answer": i % 2} for i in range(16)]
    data = write_jsonl(tmp_path / "mc.jsonl", rows)
    cli(
        [
            "train",
            "task=multiple-choice",
            *FAST,
            f"task.data.path={data}",
            "task.data.text_columns=[question]",
            "task.data.label_column=answer",
            "trainer.batch_size=4",
        ],
        cwd=tmp_path,
    )
    run = only_run_dir(tmp_path / "outputs")
    row = write_jsonl(tmp_path / "row.jsonl", [{"question": "where is it", "choices": ["a cat", "the big red dog"]}])
    cli(["explain", f"run={run}", f"input={row}", "target=1", "output_dir=ex"], cwd=tmp_path)
    item = _explained(tmp_path / "ex")[0]
    assert item["target"] == "choice 1" and _complete(item)
    assert item["tokens"] == ["[CLS]", "where", "is", "it", "[SEP]", "the", "big", "red", "dog", "[SEP]"]


def test_ner_explains_each_predicted_entity_or_a_named_word(tmp_path):
    cli(["train", "task=ner", *FAST, "trainer.batch_size=8"], cwd=tmp_path)
    run = only_run_dir(tmp_path / "outputs")
    text = "Jordan Smith flew to Washington to meet Ford executives ."
    cli(["explain", f"run={run}", f"prompt={text}", "output_dir=all"], cwd=tmp_path)
    items = _explained(tmp_path / "all")
    assert items and all(_complete(i) for i in items) and all(i["text"] == text for i in items)
    cli(["explain", f"run={run}", f"prompt={text}", "target=Washington", "output_dir=one"], cwd=tmp_path)
    (item,) = _explained(tmp_path / "one")
    assert item["target"].startswith("Washington -> ") and _complete(item)
    out = cli(["explain", f"run={run}", f"prompt={text}", "target=Paris"], cwd=tmp_path, check=False)
    assert out.returncode == 2 and "target=Paris is not a word of the text" in out.stderr


def test_a_family_it_cannot_explain_is_one_line(tmp_path):
    cli(["train", "task=qa", *FAST, "trainer.batch_size=4", "task.doc_stride=16"], cwd=tmp_path)
    out = cli(["explain", f"run={only_run_dir(tmp_path / 'outputs')}", "prompt=x"], cwd=tmp_path, check=False)
    assert out.returncode == 2 and "task.family=extractive_qa is not one" in out.stderr
