"""Nested JSON as the field publishes it, through the CLI: SQuAD's official v1.1/v2.0 layout read for task=qa,
and dotted paths (`translation.en`) in column options and prompt templates, as WMT rows need."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import FAST, cli, only_run_dir, write_jsonl

NAMES = ["Emil Ambler", "Hugo Castell", "Cora Holt", "Ida Brenn", "Lars Vik", "Mona Reed", "Otto Lind", "Pia Sand"]
TOWNS = ["Kelport", "Dunmoor", "Roshaven", "Torfield", "Belbrook", "Pelport", "Wenfield", "Ashby"]


def _squad_file(path: Path, articles: int, offset: int) -> tuple[int, int]:
    """A SQuAD v2.0 file (version, data[title, paragraphs[context, qas[id, question, answers, is_impossible]]]):
    two answerable questions and one unanswerable one per paragraph. Returns (questions, unanswerable)."""
    data, questions, impossible = [], 0, 0
    for a in range(articles):
        paragraphs = []
        for p in range(2):
            name, town = NAMES[(a + p + offset) % len(NAMES)], TOWNS[(a * 3 + p + offset) % len(TOWNS)]
            context = f"{name} was born in {town} in 19{50 + a}. {name} works as a painter."
            qas = [
                {
                    "id": f"{offset}-{a}-{p}-0",
                    "question": f"Where was {name} born?",
                    "is_impossible": False,
                    "answers": [{"text": town, "answer_start": context.index(town)}],
                },
                {
                    "id": f"{offset}-{a}-{p}-1",
                    "question": f"What is {name}'s job?",
                    "is_impossible": False,
                    "answers": [
                        {"text": "painter", "answer_start": context.index("painter")},
                        {"text": "a painter", "answer_start": context.index("a painter")},
                    ],
                },
                {
                    "id": f"{offset}-{a}-{p}-2",
                    "question": f"Where does {name} live?",
                    "is_impossible": True,
                    "answers": [],
                    "plausible_answers": [{"text": town, "answer_start": context.index(town)}],
                },
            ]
            paragraphs.append({"context": context, "qas": qas})
            questions, impossible = questions + len(qas), impossible + 1
        data.append({"title": f"Article {offset}-{a}", "paragraphs": paragraphs})
    path.write_text(json.dumps({"version": "v2.0", "data": data}), encoding="utf-8")
    return questions, impossible


def test_squad_v2_json_trains_and_evaluates_qa(tmp_path):
    folder = tmp_path / "squad"
    folder.mkdir()
    counts = {
        split: _squad_file(folder / f"{split}.json", articles, offset)
        for split, articles, offset in (("train", 8, 0), ("validation", 2, 1), ("test", 3, 2))
    }
    cli(
        [
            "train",
            "task=qa",
            f"task.data.path={folder}",
            "model=tiny-bert",
            "model.max_length=128",
            "trainer.max_steps=2",
            "trainer.batch_size=8",
            "trainer.progress=false",
        ],
        cwd=tmp_path,
    )
    run = only_run_dir(tmp_path / "outputs")
    stats = json.loads((run / "run.json").read_text())["plan"]["data"]
    for role, split in (("train", "train"), ("eval", "validation"), ("test", "test")):
        assert stats[role]["rows"] == counts[split][0], (role, stats)  # one row per question, not one per file
        assert stats[role]["unanswerable"] == counts[split][1], (role, stats)
    metrics = json.loads((run / "eval.json").read_text())["metrics"]
    assert metrics["examples"] == counts["test"][0] and "f1" in metrics
    cli(
        ["eval", f"run={run}", "split=validation", f"hydra.run.dir={tmp_path / 'ev'}"], cwd=tmp_path
    )  # the eval verb reads it too
    assert json.loads((tmp_path / "ev" / "eval.json").read_text())["metrics"]["examples"] == counts["validation"][0]


def test_squad_layout_is_found_by_content_not_name(tmp_path):
    """A SQuAD v1.1 file under any name, carved into splits, is read as one row per question."""
    questions, _ = _squad_file(tmp_path / "my-data.json", 8, 0)
    squad = json.loads((tmp_path / "my-data.json").read_text())
    for article in squad["data"]:  # v1.1: no unanswerable questions, no is_impossible field
        for paragraph in article["paragraphs"]:
            paragraph["qas"] = [{k: v for k, v in q.items() if k != "is_impossible"} for q in paragraph["qas"] if q["answers"]]
    (tmp_path / "my-data.json").write_text(json.dumps({**squad, "version": "1.1"}), encoding="utf-8")
    cli(
        [
            "train",
            "task=qa",
            "task.data.path=my-data.json",
            "model=tiny-bert",
            "model.max_length=128",
            "trainer.max_steps=1",
            "trainer.progress=false",
            "task.data.carve_ratio=0.25",
        ],
        cwd=tmp_path,
    )
    stats = json.loads((only_run_dir(tmp_path / "outputs") / "run.json").read_text())["plan"]["data"]
    answerable = questions * 2 // 3
    assert sum(stats[role]["rows"] for role in ("train", "eval", "test")) == answerable, stats
    assert all(stats[role]["unanswerable"] == 0 for role in stats)


WORDS = {
    "the dog": "cainele",
    "the cat": "pisica",
    "runs": "alearga",
    "sleeps": "doarme",
    "a bird": "o pasare",
    "eats": "mananca",
}


def _wmt_folder(folder: Path) -> Path:
    """WMT16-style rows: {"translation": {"en": ..., "ro": ...}}."""
    folder.mkdir()
    subjects, verbs = ["the dog", "the cat", "a bird"], ["runs", "sleeps", "eats"]
    rows = [{"translation": {"en": f"{s} {v}", "ro": f"{WORDS[s]} {WORDS[v]}"}} for s in subjects for v in verbs]
    for split, n in (("train", 9), ("validation", 4), ("test", 5)):
        write_jsonl(folder / f"{split}.jsonl", [rows[i % len(rows)] for i in range(n)])
    return folder


@pytest.mark.parametrize(
    "source",
    [
        ["task.prompt_template=null", "task.data.text_columns=[translation.en]"],  # the source as a column option
        ["task.prompt_template='translate English to Romanian: {translation.en}'"],  # the source as a template placeholder
    ],
)
def test_wmt_nested_rows_train_translation(tmp_path, source):
    data = _wmt_folder(tmp_path / "wmt")
    cli(
        [
            "train",
            "task=translation",
            "model=tiny-t5",
            f"task.data.path={data}",
            "task.response_column=translation.ro",
            *source,
            "trainer.max_steps=2",
            "trainer.batch_size=4",
            "trainer.progress=false",
            "task.eval_generate_samples=2",
            "task.generation.max_new_tokens=4",
        ],
        cwd=tmp_path,
    )
    run = only_run_dir(tmp_path / "outputs")
    stats = json.loads((run / "run.json").read_text())["plan"]["data"]
    assert {role: stats[role]["rows"] for role in ("train", "eval", "test")} == {"train": 9, "eval": 4, "test": 5}
    samples = [json.loads(line) for line in (run / "generations-test.jsonl").read_text().splitlines()]
    assert samples[0]["reference"] == ["cainele alearga"]  # the target is the nested field's text
    if "{" in source[0]:
        assert samples[0]["input"] == "translate English to Romanian: the dog runs"
        inputs = write_jsonl(tmp_path / "in.jsonl", [{"translation": {"en": "the cat eats"}}])  # nested input rows too
        cli(
            ["generate", f"run={run}", f"input={inputs}", f"output={tmp_path / 'out.jsonl'}", "generation.max_new_tokens=4"],
            cwd=tmp_path,
        )
        assert "generation" in json.loads((tmp_path / "out.jsonl").read_text())


def test_nested_fields_in_classification_columns(tmp_path):
    rows = [{"review": {"text": f"{w} film number {i}"}, "meta": {"label": w}} for i in range(24) for w in ("good", "bad")]
    write_jsonl(tmp_path / "reviews.jsonl", rows)
    cli(
        [
            "train",
            "task=classification",
            "task.data.path=reviews.jsonl",
            "task.data.text_columns=[review.text]",
            "task.data.label_column=meta.label",
            *FAST,
        ],
        cwd=tmp_path,
    )
    stats = json.loads((only_run_dir(tmp_path / "outputs") / "run.json").read_text())["plan"]["data"]
    assert sum(stats[role]["rows"] for role in ("train", "eval", "test")) == len(rows), stats


@pytest.mark.parametrize("override", ["task.response_column=translation.de", "task.prompt_template='{translation.de}'"])
def test_wrong_dotted_path_is_one_line(tmp_path, override):
    data = _wmt_folder(tmp_path / "wmt")
    proc = cli(
        [
            "train",
            "task=translation",
            "model=tiny-t5",
            f"task.data.path={data}",
            "task.response_column=translation.ro",
            override,
            "trainer.max_steps=1",
            "trainer.progress=false",
        ],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    error = [line for line in proc.stderr.splitlines() if "translation.de" in line]
    assert len(error) == 1 and "translation.en" in error[0] and "translation.ro" in error[0], proc.stderr[-2000:]
