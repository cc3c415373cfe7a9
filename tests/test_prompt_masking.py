"""The pitfalls of causal-LM fine-tuning: prompt masking by offsets, EOS supervised when pad == eos,
assistant-only loss in multi-turn chat, left padding for batched generation, QA answers mapped through offsets."""

from __future__ import annotations

import pytest
import torch

from llmft.models import backbone
from llmft.config import GenerationConfig, ModelConfig
from llmft.tasks.options import TextGenerationOptions
from llmft.tasks.causal_lm import IGNORE, CausalLMTask


@pytest.fixture(scope="module")
def tokenizer():
    source, _ = backbone.resolve(ModelConfig(name_or_path="builtin:tiny-gpt2"))
    return backbone.load_tokenizer(source, ModelConfig())


def _task(tokenizer, **cfg) -> CausalLMTask:
    task = CausalLMTask(TextGenerationOptions(family="causal_lm", **cfg))
    task.tokenizer, task.max_length = tokenizer, 128
    return task


def _supervised_text(tokenizer, features) -> str:
    return tokenizer.decode([t for t, lab in zip(features["input_ids"], features["labels"]) if lab != IGNORE])


@pytest.mark.parametrize("chat", [False, True])
def test_labels_mask_exactly_the_prompt_and_supervise_eos(tokenizer, chat):
    task = _task(tokenizer, prompt_template="Q: {q}\nA:", response_column="a", use_chat_template=chat)
    f = task.encode({"q": "what is two plus three?", "a": " five"})
    labels, ids = f["labels"], f["input_ids"]
    first = next(i for i, lab in enumerate(labels) if lab != IGNORE)
    assert all(lab == IGNORE for lab in labels[:first])  # every prompt token masked
    assert all(lab == t for lab, t in zip(labels[first:], ids[first:]) if lab != IGNORE)
    supervised = _supervised_text(tokenizer, f)
    assert "five" in supervised and "what is" not in supervised
    assert tokenizer.eos_token_id in [lab for lab in labels if lab != IGNORE]  # the model learns to stop


def test_eos_supervised_even_when_pad_equals_eos(tokenizer):
    tokenizer.pad_token = tokenizer.eos_token  # the SmolLM2 / Llama situation
    try:
        task = _task(tokenizer, prompt_template="{q}", response_column="a", use_chat_template=False)
        f = task.encode({"q": "say hi:", "a": " hi"})
        assert f["labels"][-1] == tokenizer.eos_token_id == tokenizer.pad_token_id
        batch = task.collator(tokenizer)([f, task.encode({"q": "say a longer thing please:", "a": " ok then"})])
        assert batch["labels"][0, len(f["labels"]) - 1] == tokenizer.eos_token_id  # real EOS kept
        assert (batch["labels"][0, len(f["labels"]) :] == IGNORE).all()  # padding positions masked
    finally:
        tokenizer.pad_token = "<pad>"


def test_prompt_boundary_uses_the_joint_tokenization(tokenizer):
    """The prompt ends mid-word: tokenizing prompt and response apart would split differently."""
    task = _task(tokenizer, prompt_template="{q}", response_column="a", use_chat_template=False)
    f = task.encode({"q": "The river", "a": "bank"})
    joint = tokenizer("The riverbank", add_special_tokens=True)["input_ids"]
    assert f["input_ids"][: len(joint)] == joint


def test_multi_turn_chat_supervises_only_assistant_turns(tokenizer):
    task = _task(tokenizer, messages_column="messages")
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "answer one"},
        {"role": "user", "content": "second question"},
        {"role": "assistant", "content": "answer two"},
    ]
    supervised = _supervised_text(tokenizer, task.encode({"messages": messages}))
    assert "answer one" in supervised and "answer two" in supervised
    assert "question" not in supervised and "brief" not in supervised and "user" not in supervised


def test_batched_left_padded_generation_equals_one_by_one(tokenizer):
    from llmft.models.builtin import tiny_config
    from llmft.inference.generation import generate
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config("tiny-gpt2", tokenizer))
    prompts = ["a", "Belbrook is a busy town in the", "Every spring"]
    cfg = GenerationConfig(max_new_tokens=6, batch_size=3)
    batched = generate(model, tokenizer, prompts, cfg, torch.device("cpu"))
    single = [
        generate(model, tokenizer, [p], GenerationConfig(max_new_tokens=6, batch_size=1), torch.device("cpu"))[0] for p in prompts
    ]
    assert batched == single
    assert tokenizer.padding_side == "right"  # restored for training


def test_qa_answers_map_to_tokens_and_back():
    from llmft.tasks.extractive_qa import _answer_tokens

    offsets = [None, None, (0, 4), (5, 10), (11, 16), (16, 17), None]  # [CLS] q [SEP]-style: None outside the context
    context = "Emil lives there."
    assert _answer_tokens({"text": ["lives"], "answer_start": [5]}, offsets) == (3, 3)
    assert _answer_tokens({"text": ["lives there"], "answer_start": [5]}, offsets) == (3, 4)
    assert context[offsets[3][0] : offsets[4][1]] == "lives there"
    assert _answer_tokens({"text": [], "answer_start": []}, offsets) == (0, 0)  # unanswerable -> first token
    assert _answer_tokens({"text": ["far away"], "answer_start": [40]}, offsets) == (0, 0)  # not in this window
