"""LLM data as it is published (issue #22.1, #19.2): Alpaca, ShareGPT and OpenAI chat JSONL files in their exact
layouts (tests/fixtures/llm_data), told by their content, train through the CLI; rows a chat template cannot take
are one line naming the file and the row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli, only_run_dir, write_jsonl

DATA = Path(__file__).parent / "fixtures" / "llm_data"
ONE_STEP = [
    "model=tiny-gpt2",
    "trainer.max_steps=1",
    "trainer.batch_size=4",
    "trainer.progress=false",
    "task.data.carve_ratio=0.25",
]


def _train(tmp_path: Path, *args: str, check: bool = True):
    return cli(["train", *ONE_STEP, *args], tmp_path, check=check)


def _plan(tmp_path: Path) -> dict:
    return json.loads((only_run_dir(tmp_path / "outputs") / "run.json").read_text())["plan"]


@pytest.mark.parametrize(
    "task, file, told",
    [
        ("sft", "alpaca_data.json", "alpaca (columns instruction, input, output) -> chat template"),
        ("sft", "alpaca_bom_crlf.json", "alpaca (columns instruction, input, output) -> chat template"),
        ("chat", "sharegpt.json", "sharegpt (column 'conversations') -> chat template"),
        ("chat", "sharegpt_bom_crlf.json", "sharegpt (column 'conversations') -> chat template"),
        ("chat", "openai_bom_crlf.jsonl", "openai (column 'messages' (task.messages_column)) -> chat template"),
        # content "4" stays text (datasets' JSON feature would give the integer 4): conversations are read as written
        ("chat", "openai_plain.jsonl", "openai (column 'messages' (task.messages_column)) -> chat template"),
        ("sft", "openai_plain.jsonl", "openai (column 'messages') -> chat template"),
    ],
)
def test_published_layouts_train_told_by_content(tmp_path, task, file, told):
    proc = _train(tmp_path, f"task={task}", f"task.data.path={DATA / file}")
    assert f"format={told}" in proc.stdout + proc.stderr
    plan = _plan(tmp_path)
    assert plan["format"] == told and plan["data"]["train"]["supervised_tokens"] > 0


def test_alpaca_without_a_chat_template_uses_the_published_prompt(tmp_path):
    proc = _train(tmp_path, "task=sft", f"task.data.path={DATA / 'alpaca_data.json'}", "task.use_chat_template=false")
    assert "format=alpaca (columns instruction, input, output) -> the Alpaca prompt" in proc.stdout + proc.stderr


def test_format_option_overrides_the_content(tmp_path):
    proc = _train(tmp_path, "task=chat", f"task.data.path={DATA / 'sharegpt.json'}", "task.data.format=openai", check=False)
    assert proc.returncode == 2 and "column 'messages' not found" in proc.stderr


@pytest.mark.parametrize("file", ["openai_chat.jsonl", "sharegpt_tools.json"])
def test_tool_turns_render_through_a_template_that_reads_them(tmp_path, file):
    _train(tmp_path, "task=chat", f"task.data.path={DATA / file}", f"task.chat_template={DATA / 'chatml_tools.jinja'}")
    saved = (only_run_dir(tmp_path / "outputs") / "checkpoints" / "best" / "chat_template.jinja").read_text()
    assert saved == (DATA / "chatml_tools.jinja").read_text()  # generate and serve load this tokenizer


def test_tool_turns_are_refused_in_one_line_where_the_template_cannot_render_them(tmp_path):
    proc = _train(tmp_path, "task=chat", f"task.data.path={DATA / 'openai_chat.jsonl'}", check=False)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "openai_chat.jsonl" in line and "tool-call turn" in line and "task.chat_template" in line


@pytest.mark.parametrize("turn", [{"speaker": "human", "text": "hi"}, {"role": "user"}, "hi"])
def test_messages_without_role_and_content_name_file_row_and_keys(tmp_path, turn):
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]} for i in range(8)]
    rows[5]["messages"][0] = turn
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    proc = _train(tmp_path, "task=chat", f"task.data.path={data}", "task.data.carve_ratio=0.1", check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 2, proc.stderr
    assert "line 6 of " in proc.stderr and "chat.jsonl" in proc.stderr
    assert "role and content" in proc.stderr and "from and value" in proc.stderr
