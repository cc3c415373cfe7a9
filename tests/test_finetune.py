"""Fine-tuning methods by config: frozen parts, LoRA (merged or as an adapter), dropout, gradient checkpointing."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import FAST, only_run_dir, cli, write_jsonl
from llmft.config import FinetuneConfig, FinetuneMethod, ModelConfig
from llmft.tasks.options import ClassificationOptions as TaskConfig
from llmft.errors import UserError
from llmft.models.finetune import apply_method, parameter_counts
from llmft.tasks.classification import ClassificationTask


def _tiny_model(dropout=None):
    from llmft.models.backbone import load_model, load_tokenizer, resolve

    cfg = ModelConfig(name_or_path="builtin:tiny-bert", dropout=dropout)
    source, weights = resolve(cfg)
    task = ClassificationTask(TaskConfig())
    task.label_names = ["negative", "positive"]
    return load_model(task.auto_class_name, weights, load_tokenizer(source, cfg), cfg, **task.head_kwargs())


def _trainable(model):
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_freeze_embeddings_and_first_layers():
    model = apply_method(
        _tiny_model(), FinetuneConfig(method=FinetuneMethod.freeze, freeze_embeddings=True, freeze_layers=1), "SEQ_CLS", False
    )
    names = _trainable(model)
    assert not any(n.startswith("bert.embeddings") for n in names)
    assert not any(n.startswith("bert.encoder.layer.0.") for n in names)
    assert any(n.startswith("bert.encoder.layer.1.") for n in names)
    assert {"classifier.weight", "classifier.bias"} <= names


def test_head_only_trains_just_the_head():
    model = apply_method(_tiny_model(), FinetuneConfig(method=FinetuneMethod.freeze, head_only=True), "SEQ_CLS", False)
    assert _trainable(model) == {"classifier.weight", "classifier.bias"}


def test_freezing_more_layers_than_exist_is_an_error():
    with pytest.raises(UserError, match="freeze_layers=5 but the backbone has 2 layers"):
        apply_method(_tiny_model(), FinetuneConfig(method=FinetuneMethod.freeze, freeze_layers=5), "SEQ_CLS", False)


def test_frozen_weights_do_not_move_in_training():
    model = apply_method(_tiny_model(), FinetuneConfig(method=FinetuneMethod.freeze, freeze_embeddings=True), "SEQ_CLS", False)
    before = model.bert.embeddings.word_embeddings.weight.clone()
    head_before = model.classifier.weight.clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    out = model(input_ids=torch.tensor([[101, 2000, 102]]), labels=torch.tensor([1]))
    out.loss.backward()
    opt.step()
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, before)
    assert not torch.equal(model.classifier.weight, head_before)


def test_lora_wraps_with_few_trainable_parameters():
    model = apply_method(_tiny_model(), FinetuneConfig(method=FinetuneMethod.lora, lora_r=4), "SEQ_CLS", False)
    trainable, total = parameter_counts(model)
    assert 0 < trainable < 0.05 * total
    assert any("lora_A" in n for n in _trainable(model))
    assert any("classifier" in n for n in _trainable(model))  # the new head trains too


def test_dropout_override_reaches_the_config():
    model = _tiny_model(dropout=0.3)
    assert model.config.hidden_dropout_prob == 0.3 and model.config.attention_probs_dropout_prob == 0.3


def test_lora_run_merges_into_a_plain_checkpoint(tmp_path):
    from transformers import pipeline

    cli(["train", *FAST, "finetune=lora", "trainer.gradient_checkpointing=true"], cwd=tmp_path)
    run = only_run_dir(tmp_path / "outputs")
    plan = json.loads((run / "run.json").read_text())["plan"]
    assert plan["finetune"] == "lora" and plan["trainable_parameters"] < 0.1 * plan["total_parameters"]
    best = run / "checkpoints" / "best"
    assert (best / "config.json").is_file() and not (best / "adapter_config.json").exists()
    state_keys = json.loads((best / "config.json").read_text())
    assert state_keys["id2label"] == {"0": "negative", "1": "positive"}
    assert pipeline("text-classification", model=str(best), device="cpu")("fine")[0]["label"] in ("negative", "positive")


@pytest.mark.slow  # loads the 22.7M MiniLM
def test_lora_adapter_without_merge_on_a_pretrained_base(tmp_path):
    args = [
        "train",
        "model=minilm-l6",
        "task.data.max_train_samples=32",
        "task.data.max_eval_samples=16",
        "trainer.batch_size=8",
        "trainer.max_steps=2",
        "trainer.progress=false",
        "finetune=lora",
        "finetune.merge=false",
    ]
    cli(args, cwd=tmp_path)
    run = only_run_dir(tmp_path / "outputs")
    assert (run / "checkpoints" / "best" / "adapter_config.json").is_file()
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"text": "great"}])
    out = cli(["generate", f"run={run}", f"input={inputs}"], cwd=tmp_path).stdout
    assert json.loads(out.strip().splitlines()[-1])["label"] in ("negative", "positive")


def test_lora_without_merge_on_a_random_base_is_refused(tmp_path):
    proc = cli(["train", *FAST, "finetune=lora", "finetune.merge=false"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "needs a pretrained base" in proc.stderr
