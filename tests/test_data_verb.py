"""`llmft data` (issue #22.4): rows rendered exactly as training renders them, supervised tokens [[bracketed]] off a
terminal and highlighted on one, counts and quality checks (duplicates, leakage, short texts) for every family,
written as report.json / report.html; `task.data.dedup=true` drops duplicates before splits are carved."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli, write_jsonl

DATA = Path(__file__).parent / "fixtures" / "llm_data"
ALPACA = DATA / "alpaca_data.json"


def _data(tmp_path: Path, *args: str, check: bool = True):
    return cli(["data", *args, f"output={tmp_path / 'report'}"], tmp_path, check=check)


def _report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "report" / "report.json").read_text())


def test_alpaca_rows_render_the_published_prompt_with_and_without_input(tmp_path):
    proc = _data(
        tmp_path,
        "task=sft",
        "model=tiny-gpt2",
        "model.max_length=512",
        f"task.data.path={ALPACA}",
        "task.use_chat_template=false",
        "task.data.carve_ratio=0.25",
        "rows=8",
    )
    texts = [r["views"]["input_ids"] for r in _report(tmp_path)["rows"]]
    with_input = [t for t in texts if "### Input:" in t]
    without = [t for t in texts if "### Input:" not in t]
    assert with_input and without
    for text in with_input:
        assert text.startswith("Below is an instruction that describes a task, paired with an input")
        assert "\n\n### Input:\n" in text and "\n\n### Response:\n[[" in text
    for text in without:
        assert text.startswith("Below is an instruction that describes a task. Write a response")
        assert "\n\n\n" not in text and "\n\n### Response:\n[[" in text  # no empty input section, no blank line
    assert all(t.endswith("<|im_end|>]]") for t in texts)  # the answer and EOS supervised, nothing else
    assert "[[" in proc.stdout and "\x1b[" not in proc.stdout  # off a terminal: brackets, no colour codes


def test_chat_rows_supervise_assistant_turns_only(tmp_path):
    _data(tmp_path, "task=chat", "model=tiny-gpt2", f"task.data.path={DATA / 'sharegpt.json'}", "rows=2")
    report = _report(tmp_path)
    text = report["rows"][0]["views"]["input_ids"]
    supervised = [part.split("]]")[0] for part in text.split("[[")[1:]]
    assert len(supervised) == 2 and supervised[1] == "You are welcome.<|im_end|>\n"
    assert all("user" not in s for s in supervised)
    train = report["splits"]["train"]
    assert train["eos_at_every_supervised_end"] and train["no_supervised_rows"] == 0
    assert report["format"] == "sharegpt (column 'conversations') -> chat template" and "im_start" in report["chat_template"]
    html = (tmp_path / "report" / "report.html").read_text()
    assert "<svg" in html and "histogram" in html


def test_truncation_and_a_row_with_no_supervised_token_are_counted(tmp_path):
    rows = [{"prompt": "word " * (200 if i == 0 else 3), "response": "yes"} for i in range(12)]
    data = write_jsonl(tmp_path / "sft.jsonl", rows)
    _data(
        tmp_path,
        "task=sft",
        "model=tiny-gpt2",
        "model.max_length=32",
        f"task.data.path={data}",
        "task.truncation_side=right",
        "task.use_chat_template=false",
        "task.data.carve_ratio=0.1",
    )
    stats = {role: s for role, s in _report(tmp_path)["splits"].items()}
    assert sum(s.get("dropped_unsupervised", 0) for s in stats.values()) == 1  # its answer cut away: dropped, counted
    assert stats["train"]["token_lengths"]["max"] <= 32 and stats["train"]["histogram"]["counts"]


def test_on_a_terminal_supervised_tokens_are_highlighted(tmp_path):
    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("NO_COLOR", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "llmft",
            "data",
            "task=chat",
            "model=tiny-gpt2",
            "rows=1",
            f"task.data.path={DATA / 'sharegpt.json'}",
            f"output={tmp_path / 'report'}",
        ],
        cwd=tmp_path,
        env=env,
        stdout=follower,
        stderr=subprocess.PIPE,
        timeout=300,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert "\x1b[" in out and "supervised tokens highlighted" in out and "[[" not in out


def test_planted_leakage_and_duplicates_are_found(tmp_path):
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()
    train = [{"text": " ".join(2 * (words[i:] + words[:i])) + f" number {i}", "label": i % 2} for i in range(16)]
    train.append(dict(train[3]))  # an exact duplicate inside train
    validation = [
        {"text": "something unrelated entirely here", "label": 0},
        {"text": train[5]["text"].upper(), "label": 1},  # the same row but for case: exact after folding
        {"text": train[9]["text"].replace("number 9", "number nine"), "label": 1},  # nearly the same
        {"text": "another fresh sentence for the model", "label": 1},
    ]
    folder = tmp_path / "data"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", train)
    write_jsonl(folder / "validation.jsonl", validation)
    write_jsonl(folder / "test.jsonl", [{"text": "a test sentence that stands alone", "label": 0}] * 2)
    proc = _data(tmp_path, "task=classification", "model=tiny-bert", f"task.data.path={folder}")
    report = _report(tmp_path)
    leak = report["quality"]["leakage"]["eval"]
    assert leak["exact"] == 1 and leak["exact_rows"] == [1]
    assert leak["near"] >= 1 and any(p["row"] == 2 and p["train_row"] == 9 for p in leak["near_pairs"])
    assert report["quality"]["leakage"]["test"] == {**report["quality"]["leakage"]["test"], "exact": 0, "near": 0}
    assert report["quality"]["splits"]["train"]["exact_duplicate_rows"] == 1
    assert report["quality"]["splits"]["test"]["exact_duplicate_rows"] == 1
    assert report["splits"]["train"]["labels"] == {"0": 8, "1": 9}
    assert "LEAKAGE: eval rows also in train: 1 exact" in proc.stdout

    dedup = tmp_path / "dedup"
    dedup.mkdir()
    proc = _data(dedup, "task=classification", "model=tiny-bert", f"task.data.path={folder}", "task.data.dedup=true")
    assert "dropped 1 duplicate row(s)" in proc.stderr
    assert _report(dedup)["splits"]["train"]["rows"] == 16


def test_empty_and_short_texts_are_counted(tmp_path):
    rows = [{"text": f"a fine sentence number {i}", "label": i % 2} for i in range(20)] + [{"text": "ok", "label": 1}]
    data = write_jsonl(tmp_path / "short.jsonl", rows)
    _data(tmp_path, "task=classification", "model=tiny-bert", f"task.data.path={data}", "task.data.carve_ratio=0.1")
    checks = _report(tmp_path)["quality"]["splits"]
    assert sum(c["empty_or_short"] for c in checks.values()) == 1


@pytest.mark.parametrize(
    "task, model",
    [
        ("ner", "tiny-bert"),
        ("qa", "tiny-bert"),
        ("multiple-choice", "tiny-bert"),
        ("sts", "tiny-bert"),
        ("embedding", "tiny-bert"),
        ("summarization", "tiny-t5"),
        ("textgen", "tiny-gpt2"),
        ("sentiment", "tiny-bert"),
    ],
)
def test_every_family_reports(tmp_path, task, model):
    extra = ["model.max_length=128"] if task == "qa" else []
    _data(
        tmp_path,
        f"task={task}",
        f"model={model}",
        "rows=2",
        "task.data.max_train_samples=64",
        "task.data.max_eval_samples=32",
        *extra,
    )
    report = _report(tmp_path)
    assert len(report["rows"]) == 2 and all(r["text"] for r in report["rows"])
    assert set(report["splits"]) == {"train", "eval", "test"} and report["splits"]["train"]["token_lengths"]["max"] > 0


def test_a_prompt_template_typed_on_the_command_line_understands_newlines(tmp_path):
    data = write_jsonl(tmp_path / "qa.jsonl", [{"q": f"{i} + 1", "a": str(i + 1)} for i in range(8)])
    _data(
        tmp_path,
        "task=sft",
        "model=tiny-gpt2",
        f"task.data.path={data}",
        "task.response_column=a",
        "task.use_chat_template=false",
        r"task.prompt_template='Q: {q}\nA: '",
        "rows=1",
    )
    text = _report(tmp_path)["rows"][0]["views"]["input_ids"]
    assert text.startswith("Q: ") and "\nA:" in text and "\\n" not in text
