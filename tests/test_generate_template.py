"""`llmft generate prompt=...` on a run whose prompt template has two fields (generative QA: {context}, {question}):
one text cannot fill the template the model was trained on, so the bare prompt is refused in one line naming input=
and the fields; rows that name both fields generate through the template."""

from __future__ import annotations

import json

from conftest import FAST, cli, only_run_dir, write_jsonl


def test_bare_prompt_on_a_two_field_template_names_input_and_the_fields(tmp_path):
    cli(
        [
            "train",
            "task=generative-qa",
            "model=tiny-gpt2",
            *FAST[1:],
            "task.eval_generate_samples=2",
            "task.generation.max_new_tokens=4",
        ],
        cwd=tmp_path,
    )
    run = only_run_dir(tmp_path / "outputs")
    proc = cli(
        ["generate", f"run={run}", "prompt=Who was born in Kelport?", "generation.max_new_tokens=4"], cwd=tmp_path, check=False
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "input=" in line and "context" in line and "question" in line, line
    rows = [{"context": "Emil Ambler was born in Kelport.", "question": "Who was born in Kelport?"}]
    out = cli(
        ["generate", f"run={run}", f"input={write_jsonl(tmp_path / 'q.jsonl', rows)}", "generation.max_new_tokens=4"],
        cwd=tmp_path,
    )
    assert "generation" in json.loads(out.stdout.strip().splitlines()[-1])
