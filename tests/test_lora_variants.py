"""The LoRA family's switches (DoRA, rsLoRA), QLoRA's 4-bit base, 8-bit AdamW and NEFTune, from the CLI."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from conftest import FAST, cli, only_run_dir

SFT = [
    "task=sft",
    "model=tiny-gpt2",
    "trainer.max_steps=3",
    "trainer.batch_size=4",
    "trainer.log_every=1",
    "trainer.progress=false",
    "task.eval_generate_samples=2",
    "task.generation.max_new_tokens=2",
    "task.data.max_train_samples=32",
    "task.data.max_eval_samples=8",
    "model.dropout=0.0",
    "optimizer.lr=1e-3",
]


def _losses(run) -> list[float]:
    return [json.loads(line)["train/loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if "train/loss" in line]


def _train(tmp_path, name: str, *extra: str):
    cli(["train", *SFT, *extra, f"hydra.run.dir={tmp_path / name}"], tmp_path)
    return tmp_path / name


def test_dora_and_rslora_train_and_change_the_updates(tmp_path):
    runs = {
        name: _train(tmp_path, name, "finetune=lora", *extra)
        for name, extra in {"lora": [], "dora": ["finetune.use_dora=true"], "rslora": ["finetune.use_rslora=true"]}.items()
    }
    losses = {name: _losses(run) for name, run in runs.items()}
    for name in ("dora", "rslora"):
        assert len(losses[name]) == 3 and all(x == x for x in losses[name])  # trained, finite
        assert losses[name][0] == pytest.approx(losses["lora"][0], rel=1e-5)  # same start: adapters begin as a no-op
        assert losses[name][1:] != pytest.approx(
            losses["lora"][1:], rel=1e-6, abs=0
        )  # different updates (runs are deterministic)


def test_dora_without_adapters_fails_at_compose_time(tmp_path):
    proc = cli(["train", *FAST, "finetune.use_dora=true"], tmp_path, check=False)
    assert proc.returncode == 2 and "use finetune=lora or finetune=qlora" in proc.stderr


def test_neftune_noises_training_embeddings_only(tmp_path):
    plain, noisy = _train(tmp_path, "plain"), _train(tmp_path, "noisy", "finetune.neftune_alpha=5")
    assert _losses(noisy)[0] != pytest.approx(_losses(plain)[0], rel=1e-6)  # the first forward already saw the noise
    from llmft.models.finetune import add_neftune
    import transformers

    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2))
    add_neftune(model, 5.0)
    ids = torch.tensor([[1, 2, 3]])
    embed = model.get_input_embeddings()
    model.train()
    assert not torch.equal(embed(ids), embed.weight[ids])
    model.eval()
    assert torch.equal(embed(ids), embed.weight[ids])  # eval and generation: clean


def test_adamw8bit_trains(tmp_path):
    pytest.importorskip("bitsandbytes")
    losses = _losses(_train(tmp_path, "8bit", "optimizer=adamw8bit", "trainer.max_steps=6"))
    assert len(losses) == 6 and losses[-1] < losses[0]


def test_qlora_without_bitsandbytes_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails as when it is not installed
    proc = cli(["train", "task=sft", "finetune=qlora", "trainer.max_steps=1"], tmp_path, check=False)
    assert proc.returncode == 2 and 'finetune=qlora needs bitsandbytes: pip install "llmft[qlora]"' in proc.stderr


def test_qlora_on_a_random_model_or_with_merge_is_refused(tmp_path):
    pytest.importorskip("bitsandbytes")
    proc = cli(["train", *SFT, "finetune=qlora"], tmp_path, check=False)
    assert proc.returncode == 2 and "needs a pretrained base" in proc.stderr
    proc = cli(["train", *SFT, "finetune=qlora", "finetune.merge=true"], tmp_path, check=False)
    assert proc.returncode == 2 and "format=merged" in proc.stderr


@pytest.mark.slow  # SmolLM2-135M in 4-bit on the CPU backend: ~20 s
def test_qlora_trains_smollm2_keeps_an_adapter_and_exports_merged(tmp_path):
    pytest.importorskip("bitsandbytes")
    pytest.importorskip("onnx")
    args = [
        "task=sft",
        "finetune=qlora",
        "optimizer=adamw8bit",
        "optimizer.lr=3e-4",
        "trainer.max_steps=4",
        "trainer.batch_size=4",
        "trainer.log_every=1",
        "trainer.progress=false",
        "task.data.max_train_samples=32",
        "task.data.max_eval_samples=8",
        "task.eval_generate_samples=2",
        "task.generation.max_new_tokens=4",
    ]
    cli(["train", *args], tmp_path)
    run = only_run_dir(tmp_path / "outputs")
    best = run / "checkpoints" / "best"
    assert (best / "adapter_model.safetensors").is_file()
    assert json.loads((run / "run.json").read_text())["plan"]["finetune"] == "qlora"
    losses = _losses(run)
    assert len(losses) == 4 and all(x == x for x in losses)
    cli(["export", f"run={run}", "format=merged", f"output={tmp_path / 'merged'}"], tmp_path)
    assert (tmp_path / "merged" / "config.json").is_file()
    assert "quantization_config" not in json.loads((tmp_path / "merged" / "config.json").read_text())
