"""The memory plan (engine/memory.py): a step's peak estimated from measured activations, the micro-batch chosen to fit
the budget (same losses as the whole batch), and a one-line refusal when nothing fits."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from llmft.engine import memory

from conftest import cli, only_run_dir

SFT = [
    "task=sft",
    "model=tiny-gpt2",
    "trainer.max_steps=3",
    "trainer.batch_size=8",
    "trainer.log_every=1",
    "trainer.progress=false",
    "task.eval_generate_samples=2",
    "task.generation.max_new_tokens=2",
    "task.data.max_train_samples=64",
    "task.data.max_eval_samples=16",
    "model.dropout=0.0",
]


def _losses(run) -> list[float]:
    return [json.loads(line)["train/loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if "train/loss" in line]


def test_a_batch_over_budget_runs_as_micro_batches_with_the_same_losses(tmp_path, monkeypatch):
    """With a step costing 1 GiB per row and a 2.5 GiB budget, 8 rows run as 4 passes of 2; the losses equal the
    unsplit run's (accumulation normalises by the group's tokens)."""
    cli(["train", *SFT, f"hydra.run.dir={tmp_path / 'whole'}"], tmp_path)
    monkeypatch.setattr(memory.MemoryEstimate, "peak", lambda self, rows: rows * memory.GIB)
    cli(["train", *SFT, "trainer.memory_budget_gib=2.5", f"hydra.run.dir={tmp_path / 'split'}"], tmp_path)
    plan = json.loads((tmp_path / "split" / "run.json").read_text())["plan"]
    assert plan["micro_batch_size"] == 2 and plan["effective_batch_size"] == 8
    assert json.loads((tmp_path / "whole" / "run.json").read_text())["plan"]["micro_batch_size"] == 8
    assert _losses(tmp_path / "split") == pytest.approx(_losses(tmp_path / "whole"), rel=1e-5)


def test_an_explicit_micro_batch_size_splits_the_batch(tmp_path):
    cli(["train", *SFT, "trainer.micro_batch_size=4"], tmp_path)
    plan = json.loads((only_run_dir(tmp_path / "outputs") / "run.json").read_text())["plan"]
    assert plan["micro_batch_size"] == 4 and plan["effective_batch_size"] == 8


def test_a_step_that_cannot_fit_is_refused_in_one_line_before_training(tmp_path):
    proc = cli(["train", *SFT, "trainer.memory_budget_gib=0.001"], tmp_path, check=False)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert "trainer.memory_budget_gib=0.001" in line and "trainer.gradient_checkpointing=true" in line
    assert "model.max_length" in line and "finetune=lora" in line and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("**/metrics.jsonl")) or not any(
        "train/loss" in p.read_text() for p in tmp_path.glob("**/metrics.jsonl")
    )


def test_a_micro_batch_that_does_not_divide_the_batch_fails_at_compose_time(tmp_path):
    proc = cli(["train", *SFT, "trainer.micro_batch_size=3"], tmp_path, check=False)
    assert proc.returncode == 2 and "must be >= 1 and divide trainer.batch_size=8" in proc.stderr


class _Loss:
    def loss_sum(self, model, batch):
        return model(**batch, labels=batch["input_ids"]).loss


def test_measured_activations_grow_with_the_rows_length_and_leave_no_trace():
    """Twice the tokens per row: more activation bytes per row; the probe leaves no gradients and the RNG as it was."""
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=97, n_embd=32, n_layer=2, n_head=2, n_positions=64))

    class Precision:
        device = torch.device("cpu")

        @staticmethod
        def autocast():
            return torch.autocast("cpu", enabled=False)

    def collate(rows):
        return {"input_ids": torch.tensor([r["input_ids"] for r in rows])}

    before = torch.random.get_rng_state()
    short = memory.measure(model, _Loss(), [{"input_ids": list(range(16))}], collate, Precision, 1000, "adamw")
    long = memory.measure(model, _Loss(), [{"input_ids": list(range(32))}], collate, Precision, 1000, "adamw")
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(p.grad is None for p in model.parameters())
    assert 0 < short.activations_per_row < long.activations_per_row
    assert long.state == 1000 + 250 * 8  # gradients + AdamW's two fp32 moments
    assert long.peak(2) > long.peak(1)
