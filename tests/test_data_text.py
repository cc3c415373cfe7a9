"""Raw text for language modelling: .txt (and extension-less) files read as documents (task.data.text_unit), and
task=textgen trained on the documents concatenated and cut into model.max_length blocks, so no text is lost."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from conftest import cli, only_run_dir

WORDS = (
    "the river town market bridge winter festival people stone harbour north old quiet mill lantern valley "
    "road church school green boat field hill school clock tower bakery"
).split()
FAST = [
    "task=textgen",
    "model=tiny-gpt2",
    "model.max_length=64",
    "trainer.progress=false",
    "trainer.epochs=1",
    "trainer.batch_size=4",
    "trainer.eval_batch_size=4",
]


def _paragraph(rng: random.Random, words: int) -> str:
    """A paragraph of a few lines (a blank line ends it), well over 64 tokens."""
    text = [" ".join(rng.choice(WORDS) for _ in range(words // 3)).capitalize() + "." for _ in range(3)]
    return "\n".join(text)


def _write_paragraphs(path: Path, paragraphs: list[str]) -> Path:
    # blank lines between paragraphs, one of them holding spaces, and extra blank lines at the ends
    path.write_text("\n" + "\n\n".join(paragraphs[:1]) + "\n   \n" + "\n\n\n".join(paragraphs[1:]) + "\n\n", encoding="utf-8")
    return path


def _doc_tokens(run: Path, documents: list[str]) -> int:
    """Tokens of the documents as the run's tokenizer writes them, plus one EOS after each."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run / "checkpoints" / "best")
    return sum(len(tokenizer(d, add_special_tokens=False)["input_ids"]) + 1 for d in documents)


def test_txt_corpus_trains_on_every_token(tmp_path):
    rng = random.Random(0)
    corpus = {split: [_paragraph(rng, 60) for _ in range(n)] for split, n in (("train", 6), ("validation", 2), ("test", 2))}
    folder = tmp_path / "corpus"
    folder.mkdir()
    for split, paragraphs in corpus.items():
        _write_paragraphs(folder / f"{split}.txt", paragraphs)
    out = cli(["train", *FAST, f"task.data.path={folder}"], cwd=tmp_path)
    run = only_run_dir(tmp_path / "outputs")
    stats = json.loads((run / "run.json").read_text())["plan"]["data"]
    for role, split in (("train", "train"), ("eval", "validation"), ("test", "test")):
        got, tokens = stats[role], _doc_tokens(run, corpus[split])
        assert got["documents"] == len(corpus[split])
        assert got["tokens"] == tokens  # every token of every document, + EOS, none truncated away
        assert got["tokens"] > 64 * len(corpus[split])  # each paragraph is longer than a block
        assert got["dropped_tail_tokens"] in (0, 1)  # only a one-token tail (no target in it) is dropped
        kept = tokens - got["dropped_tail_tokens"]
        assert got["blocks"] == -(-kept // 64) == got["rows"]
        assert got["supervised_tokens"] == kept - got["blocks"]  # each block's first token is context only
    train = stats["train"]
    printed = " ".join(out.stderr.split())  # progress goes to stderr; the console wraps lines to its width
    assert f"train: 6 documents, {train['tokens']:,} tokens -> {train['blocks']} blocks of 64" in printed
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["eval/tokens"] for r in records if "eval/tokens" in r][-1] == stats["eval"]["supervised_tokens"]
    test = json.loads((run / "eval.json").read_text())["metrics"]
    assert test["tokens"] == stats["test"]["supervised_tokens"] and test["perplexity"] > 1
    cli(["eval", f"run={run}"], cwd=tmp_path)  # the eval verb cuts test.txt the same way: the same number
    again = json.loads(next((tmp_path / "outputs" / "eval").glob("*/*/eval.json")).read_text())["metrics"]
    assert again["tokens"] == test["tokens"] and again["perplexity"] == pytest.approx(test["perplexity"], rel=1e-6)


@pytest.mark.parametrize("unit, documents", [("paragraph", 8), ("line", 24)])
def test_text_unit_splits_one_file(tmp_path, unit, documents):
    """One extension-less text file, carved into train/validation/test: every document lands in exactly one split."""
    rng = random.Random(1)
    corpus = _write_paragraphs(tmp_path / "corpus", [_paragraph(rng, 12) for _ in range(8)])  # 8 paragraphs of 3 lines
    cli(
        [
            "train",
            *FAST,
            f"task.data.path={corpus}",
            f"task.data.text_unit={unit}",
            "task.data.carve_ratio=0.2",
            "trainer.max_steps=1",
        ],
        cwd=tmp_path,
    )
    stats = json.loads((only_run_dir(tmp_path / "outputs") / "run.json").read_text())["plan"]["data"]
    assert sum(stats[role]["documents"] for role in ("train", "eval", "test")) == documents
    assert min(stats[role]["documents"] for role in ("eval", "test")) >= 1


def test_text_unit_file_reads_each_file_whole(tmp_path):
    folder = tmp_path / "books"
    folder.mkdir()
    rng = random.Random(2)
    texts = {split: [_paragraph(rng, 30) for _ in range(3)] for split in ("train", "validation", "test")}
    for split, paragraphs in texts.items():
        _write_paragraphs(folder / f"{split}.txt", paragraphs)
    cli(["train", *FAST, f"task.data.path={folder}", "task.data.text_unit=file", "trainer.max_steps=1"], cwd=tmp_path)
    run = only_run_dir(tmp_path / "outputs")
    stats = json.loads((run / "run.json").read_text())["plan"]["data"]
    assert stats["train"]["documents"] == 1  # the whole file, its blank lines inside, blank lines at its ends dropped
    whole = (folder / "train.txt").read_text().strip("\n")
    assert stats["train"]["tokens"] == _doc_tokens(run, [whole])


def test_extensionless_json_lines_still_read_as_json(tmp_path):
    rows = tmp_path / "rows"
    rows.write_text("".join(json.dumps({"text": f"Town {i} lies on the river."}) + "\n" for i in range(40)))
    cli(["train", *FAST, f"task.data.path={rows}", "trainer.dry_run=true"], cwd=tmp_path)


@pytest.mark.parametrize("name", ["corpus.txt", "corpus"])
def test_a_file_that_is_not_text_is_one_line(tmp_path, name):
    blob = tmp_path / name
    blob.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    out = cli(["train", *FAST, f"task.data.path={blob}"], cwd=tmp_path, check=False)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and "not a text file" in lines[0], out.stderr


def test_chunk_text_refuses_what_it_cannot_cut(tmp_path):
    for extra in (["task.packing=true"], ["task=sft"]):
        out = cli(["train", *FAST, "task.chunk_text=true", *extra], cwd=tmp_path, check=False)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and "task.chunk_text=true" in lines[0], out.stderr
