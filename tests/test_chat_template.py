"""One chat template from training to serving (issue #22.5): `task.chat_template` (a .jinja file or a name the
tokenizer ships) is saved with the checkpoint and used by `llmft generate`; a run whose template renders the
generation prompt differently from the trained turns stops at the start in one line; `task.thinking` keeps or drops
<think> blocks from the supervised text."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import cli, only_run_dir, write_jsonl

ONE_STEP = ["model=tiny-gpt2", "trainer.max_steps=1", "trainer.batch_size=4", "trainer.progress=false"]
PLAIN = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
THINKING = PLAIN.replace("<|im_start|>assistant\n{% endif %}", "<|im_start|>assistant\n<think>\n\n</think>\n\n{% endif %}")


def _chat_rows(folder: Path, answer: str = "4") -> Path:
    rows = [
        {"messages": [{"role": "user", "content": f"What is {i} + 2?"}, {"role": "assistant", "content": answer}]}
        for i in range(12)
    ]
    return write_jsonl(folder / "chat.jsonl", rows)


def test_the_template_is_saved_with_the_run_and_generate_uses_it(tmp_path):
    template = tmp_path / "plain.jinja"
    template.write_text(PLAIN)
    cli(["train", "task=chat", *ONE_STEP, f"task.data.path={_chat_rows(tmp_path)}", f"task.chat_template={template}"], tmp_path)
    run = only_run_dir(tmp_path / "outputs")
    assert (run / "checkpoints" / "best" / "chat_template.jinja").read_text() == PLAIN
    proc = cli(["generate", f"run={run}", "prompt=What is 1 + 2?", "generation.max_new_tokens=2"], tmp_path)
    assert proc.returncode == 0


def test_a_generation_prompt_that_disagrees_with_training_stops_the_run_in_one_line(tmp_path):
    template = tmp_path / "thinking.jinja"
    template.write_text(THINKING)
    proc = cli(
        ["train", "task=chat", *ONE_STEP, f"task.data.path={_chat_rows(tmp_path)}", f"task.chat_template={template}"],
        tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert "generation differently" in line and "<think>" in line and "task.chat_template" in line
    assert not (tmp_path / "outputs" / "train").exists() or not list((tmp_path / "outputs").glob("**/run.json"))


def test_unknown_template_names_and_broken_files_are_one_line(tmp_path):
    data = _chat_rows(tmp_path)
    proc = cli(
        ["data", "task=chat", "model=tiny-gpt2", f"task.data.path={data}", "task.chat_template=tool_use"], tmp_path, check=False
    )
    assert proc.returncode == 2 and "it ships: default" in proc.stderr
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% for m in messages %}\n{{ m['content'] }\n")
    proc = cli(
        ["data", "task=chat", "model=tiny-gpt2", f"task.data.path={data}", f"task.chat_template={broken}"], tmp_path, check=False
    )
    assert proc.returncode == 2 and "broken.jinja, line 2" in proc.stderr


def test_thinking_blocks_are_kept_or_dropped_from_the_supervised_text(tmp_path):
    data = _chat_rows(tmp_path, answer="<think>2 more than the number</think>The sum.")
    texts = {}
    for choice in ("keep", "drop"):
        cli(
            [
                "data",
                "task=chat",
                "model=tiny-gpt2",
                f"task.data.path={data}",
                f"task.thinking={choice}",
                "rows=1",
                f"output={tmp_path / choice}",
            ],
            tmp_path,
        )
        texts[choice] = json.loads((tmp_path / choice / "report.json").read_text())["rows"][0]["views"]["input_ids"]
    assert "[[<think>2 more than the number</think>The sum.<|im_end|>\n]]" in texts["keep"]
    assert "<think>" not in texts["drop"] and "[[The sum.<|im_end|>\n]]" in texts["drop"]
