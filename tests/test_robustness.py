"""Adversarial training (finetune.adversarial=fgm|pgd), DP-SGD (privacy.*) and the seeded attacks of `llmft eval`,
through the real CLI on the tiny BERT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import FAST, TINY, cli
from llmft.evaluation.attacks import perturb_texts
from llmft.trust_config import AttackConfig, AttackKind


def _train(tmp_path: Path, name: str, args: list[str]) -> Path:
    cli(["train", *args, f"hydra.run.dir={tmp_path / name}"], tmp_path)
    return tmp_path / name


def _losses(run: Path) -> list[float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["train/loss"] for r in records if "train/loss" in r]


def test_fgm_and_pgd_train_on_perturbed_embeddings_and_change_the_run(tmp_path):
    args = [*FAST, "trainer.log_every=1"]
    plain = _losses(_train(tmp_path, "plain", args))
    fgm = _losses(_train(tmp_path, "fgm", [*args, "finetune.adversarial=fgm", "finetune.adversarial_epsilon=5"]))
    pgd = _losses(
        _train(
            tmp_path, "pgd", [*args, "finetune.adversarial=pgd", "finetune.adversarial_epsilon=5", "finetune.adversarial_steps=2"]
        )
    )
    assert len(plain) == len(fgm) == len(pgd) == 3
    # the first step's loss is (clean + perturbed) / 2 on the same weights: the perturbation raises it
    assert fgm[0] > plain[0] and pgd[0] > plain[0]
    assert fgm != pgd


def test_adversarial_and_privacy_refuse_what_they_cannot_do(tmp_path):
    refusals = {
        ("task=sft", "model=tiny-gpt2", "finetune.adversarial=fgm"): "finetune.adversarial",
        ("privacy.epsilon=8", "trainer.gradient_checkpointing=true"): "gradient_checkpointing",
        ("privacy.epsilon=8", "trainer.grad_accum_steps=2"): "grad_accum_steps=1",
        ("privacy.epsilon=8", "finetune.adversarial=fgm"): "do not combine",
        ("privacy.epsilon=8", "task=sft", "model=tiny-gpt2"): "couples rows",
        ("privacy.epsilon=8", "trainer.group_by_length=true"): "unset trainer.group_by_length",
        ("privacy.epsilon=8", "finetune=distill", "finetune.teacher=tiny-bert", "finetune.augment=1"): "finetune.augment=0",
    }
    for args, says in refusals.items():
        proc = cli(["train", *FAST, *args], tmp_path, check=False)
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        error = [line for line in proc.stderr.splitlines() if line.startswith("error")]
        assert len(error) == 1 and says in error[0], (args, proc.stderr[-2000:])


def test_dp_sgd_run_spends_at_most_its_epsilon_and_saves_it(tmp_path):
    pytest.importorskip("opacus")
    run = _train(tmp_path, "dp", [*FAST, "privacy.epsilon=3", "privacy.max_grad_norm=0.5"])
    privacy = json.loads((run / "run.json").read_text())["privacy"]
    assert 0 < privacy["epsilon_spent"] <= 3.0 and privacy["steps"] == 3
    assert json.loads((run / "run.json").read_text())["plan"]["group_by_length"] is False  # shuffled, as accounted
    assert privacy["noise_multiplier"] > 0 and privacy["frozen_embedding_parameters"] > 0
    assert json.loads((run / "eval.json").read_text())["privacy"]["epsilon_spent"] == privacy["epsilon_spent"]
    plain = _train(tmp_path, "plain", FAST)
    assert _losses(run) != _losses(plain)


def test_attacks_are_seeded_and_change_texts():
    texts = ["The series is rather enjoyable.", "Great movie, really good!", "I hated the ending."]
    for kind, rate in ((AttackKind.charnoise, 0.1), (AttackKind.synonym, 1.0)):
        once = perturb_texts(texts, AttackConfig(kind, rate, seed=0))
        assert once == perturb_texts(texts, AttackConfig(kind, rate, seed=0))  # the same seed: the same texts
        assert once != texts and once != perturb_texts(texts, AttackConfig(kind, rate, seed=1))
        assert (
            perturb_texts(texts[1:], AttackConfig(kind, rate, 0), offset=1) == once[1:]
        )  # row by row, not by position in a batch
    assert perturb_texts(["Great movie"], AttackConfig(AttackKind.synonym, 1.0, 0))[0].split()[0] in (
        "Excellent",
        "Terrific",
        "Superb",
    )


def test_eval_reports_clean_and_attacked_metrics(tiny_run, tmp_path):
    out = tmp_path / "attacked"
    proc = cli(["eval", f"run={tiny_run}", "attack=charnoise", "attack.rate=0.3", f"hydra.run.dir={out}"], tmp_path)
    result = json.loads((out / "eval.json").read_text())
    attack = result["attack"]
    assert attack["kind"] == "charnoise" and attack["rate"] == 0.3 and attack["rows_changed"] > 0.9 * result["rows"]
    assert 0 <= attack["metrics"]["accuracy"] <= 1 and "accuracy: clean" in proc.stderr
    again = tmp_path / "again"
    cli(["eval", f"run={tiny_run}", "attack=charnoise", "attack.rate=0.3", f"hydra.run.dir={again}"], tmp_path)
    assert json.loads((again / "eval.json").read_text())["attack"] == attack  # seeded: the same attacked score


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fgm", "pgd"])
def test_adversarial_training_with_accumulation_equals_the_whole_batch(tmp_path, method):
    """Batch 8 x 2 accumulated steps trains as batch 16 in one: each row's perturbation is its own (normalised per
    row), and the clean + perturbed loss is normalised by the whole group's items."""
    args = [
        *TINY,
        f"finetune.adversarial={method}",
        "finetune.adversarial_epsilon=0.05",
        "trainer.log_every=1",
        "trainer.max_steps=6",
        "trainer.group_by_length=false",
    ]  # the same rows in each step
    whole = _losses(_train(tmp_path, "whole", [*args, "trainer.batch_size=16"]))
    split = _losses(_train(tmp_path, "split", [*args, "trainer.batch_size=8", "trainer.grad_accum_steps=2"]))
    assert len(whole) == len(split) == 6
    assert split == pytest.approx(whole, rel=1e-4, abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("finetune", [["finetune=full"], ["finetune=freeze", "finetune.freeze_layers=1"], ["finetune=lora"]])
def test_dp_sgd_trains_full_freeze_and_lora_within_budget(tmp_path, finetune):
    pytest.importorskip("opacus")
    run = _train(tmp_path, "dp", [*TINY, "privacy.epsilon=8", *finetune])
    privacy = json.loads((run / "run.json").read_text())["privacy"]
    assert 7.0 < privacy["epsilon_spent"] <= 8.0  # the noise is sized to spend the budget by the last step
    assert all(loss == loss for loss in _losses(run))  # finite: each method trains through Opacus's hooks


def test_dp_sgd_refuses_a_trainable_layer_with_buffers_in_one_line():
    """A custom backbone (trust_remote_code) with a BatchNorm: its running statistics mix rows outside the per-sample
    gradients, so Opacus cannot account for it; the run is refused naming the layer, not a bare traceback."""
    pytest.importorskip("opacus")
    import torch

    from test_audit_promises import _compose

    from llmft.commands.common import to_typed
    from llmft.config import TrainConfig
    from llmft.engine.privacy import make_private
    from llmft.errors import UserError

    config = to_typed(_compose([*FAST, "privacy.epsilon=8"]), TrainConfig)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    with pytest.raises(UserError) as refused:
        make_private(model, torch.optim.SGD(model.parameters(), lr=0.1), config, train_rows=64, num_steps=8)
    message = str(refused.value)
    assert message.startswith("privacy.epsilon (DP-SGD, Opacus)") and "\n" not in message
    assert "trainable layers with buffers (1 (BatchNorm1d))" in message and "choose a backbone without them" in message
