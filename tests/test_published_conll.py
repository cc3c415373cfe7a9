"""CoNLL-2003 as its own files come (eng.train, eng.testa, eng.testb; -DOCSTART- lines; IOB1 tags), through the CLI:
a folder of them is the three splits, errors name the file and line, and CoNLL .txt files read as raw text say which
option reads them as columns."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import cli, only_run_dir
from published import VARIANTS, copy_fixture, plan_rows

NER = ["task=token-classification", "model=tiny-bert", "trainer.progress=false"]
SENTENCES = {"train": 10, "eval": 3, "test": 3}  # in tests/fixtures/conll2003/eng.{train,testa,testb}
TAGS = "task.data.label_names=[O,I-PER,B-PER,I-LOC,I-ORG,I-MISC]"


@pytest.mark.parametrize("kind", VARIANTS)
def test_conll2003_folder_is_train_validation_test(tmp_path, kind):
    folder = copy_fixture("conll2003", tmp_path / "conll2003", kind)
    proc = cli(["train", *NER, f"task.data.path={folder}", "--dry-run"], cwd=tmp_path)
    assert plan_rows(proc.stdout) == SENTENCES, proc.stdout
    assert "carved" not in proc.stdout + proc.stderr  # nothing carved out of train


def test_conll2003_files_by_data_files_train_and_score(tmp_path):
    folder = copy_fixture("conll2003", tmp_path / "data")
    files = f"task.data.data_files={{train:{folder}/eng.train,validation:{folder}/eng.testa,test:{folder}/eng.testb}}"
    cli(["train", *NER, files, "trainer.max_steps=2", "trainer.batch_size=4"], cwd=tmp_path)
    run = only_run_dir(tmp_path / "outputs")
    stats = json.loads((run / "run.json").read_text())["plan"]["data"]
    assert {role: stats[role]["rows"] for role in SENTENCES} == SENTENCES, stats
    assert "f1" in json.loads((run / "eval.json").read_text())["metrics"]


def _bad_tag_line(path) -> int:
    """Make the tag of 'Belbrook NNP I-NP I-ORG' a typo; returns that line's number (from 1)."""
    lines = path.read_bytes().split(b"\n")
    number = next(i for i, line in enumerate(lines) if line.startswith(b"Belbrook NNP I-NP I-ORG"))
    lines[number] = lines[number].replace(b"I-ORG", b"I-ORGG")
    path.write_bytes(b"\n".join(lines))
    return number + 1


@pytest.mark.parametrize("kind", VARIANTS)
@pytest.mark.parametrize("source", ["folder", "file"])
def test_tag_error_names_file_and_line(tmp_path, kind, source):
    folder = copy_fixture("conll2003", tmp_path / "conll2003", kind)
    line = _bad_tag_line(folder / "eng.train")
    path = (
        [f"task.data.path={folder}"]
        if source == "folder"
        else [f"task.data.path={folder / 'eng.train'}", "task.data.format=conll"]
    )  # carved rows keep their line
    proc = cli(["train", *NER, *path, TAGS, "--dry-run"], cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert f"line {line} of {folder / 'eng.train'}" in message and "I-ORGG" in message, message


def test_folder_of_conll_txt_files_says_to_set_the_format(tmp_path):
    folder = tmp_path / "germeval"
    folder.mkdir()
    shutil.copy(copy_fixture("conll2003/eng.train", tmp_path / "a"), folder / "train.txt")
    shutil.copy(copy_fixture("conll2003/eng.testa", tmp_path / "b"), folder / "dev.txt")
    proc = cli(["train", *NER, f"task.data.path={folder}"], cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert "task.data.format=conll" in message and "train.txt" in message, message
    proc = cli(["train", *NER, f"task.data.path={folder}", "task.data.format=conll", "--dry-run"], cwd=tmp_path)
    assert plan_rows(proc.stdout)["train"] + plan_rows(proc.stdout)["test"] == SENTENCES["train"], proc.stdout


def test_word_accuracy_compares_tags_as_predicted(tmp_path):
    # a model trained on I-PER alone predicts I-PER for every word; on IOB1 gold `O I-PER I-PER O` that is right on
    # 2 of 4 words (run_ner.py's accuracy). Rewriting the predictions to IOB2 first (B-PER I-PER I-PER I-PER) made the
    # second word wrong: 0.25
    train = "".join(f"w{i} X X I-PER\nv{i} X X I-PER\n\n" for i in range(48))
    gold = "".join(f"a{i} X X O\nb{i} X X I-PER\nc{i} X X I-PER\nd{i} X X O\n\n" for i in range(8))
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "eng.train").write_text(train)
    (folder / "eng.testa").write_text(gold)
    (folder / "eng.testb").write_text(gold)
    cli(
        [
            "train",
            *NER,
            f"task.data.path={folder}",
            "task.data.label_names=[O,I-PER]",
            "trainer.max_steps=12",
            "trainer.batch_size=8",
            "optimizer.lr=5e-3",
            "trainer.eval_every=0",
        ],
        cwd=tmp_path,
    )
    metrics = json.loads((only_run_dir(tmp_path / "outputs") / "eval.json").read_text())["metrics"]
    assert metrics["accuracy"] == pytest.approx(0.5), metrics
