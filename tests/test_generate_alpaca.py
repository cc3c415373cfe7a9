"""`llmft generate prompt=...` on a run trained on Alpaca rows wraps the prompt as training did (issue #22, item 1/5):
the published Alpaca prompt without a chat template, the user turn (no template's trailing newline) with one."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import cli, only_run_dir

ALPACA = Path(__file__).parent / "fixtures" / "llm_data" / "alpaca_data.json"
ONE_STEP = [
    "task=sft",
    "model=tiny-gpt2",
    "trainer.max_steps=1",
    "trainer.batch_size=4",
    "trainer.progress=false",
    "task.data.carve_ratio=0.25",
    f"task.data.path={ALPACA}",
]


@pytest.mark.parametrize(
    "chat, expected",
    [
        (
            "false",
            "Below is an instruction that describes a task. Write a response that appropriately completes the "
            "request.\n\n### Instruction:\nName a color.\n\n### Response:\n",
        ),
        ("true", "<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\n"),
    ],
)
def test_generate_wraps_the_prompt_as_alpaca_training_did(tmp_path, monkeypatch, chat, expected):
    import llmft.tasks.text_common as text_common  # generation.generate as the generative tasks call it

    cli(["train", *ONE_STEP, f"task.use_chat_template={chat}"], tmp_path)
    seen: list[str] = []
    real = text_common.generate

    def spy(model, tokenizer, prompts, *args, **kwargs):
        seen.extend(prompts)
        return real(model, tokenizer, prompts, *args, **kwargs)

    monkeypatch.setattr(text_common, "generate", spy)
    cli(
        ["generate", f"run={only_run_dir(tmp_path / 'outputs')}", "prompt=Name a color.", "generation.max_new_tokens=2"], tmp_path
    )
    assert seen == [expected]
