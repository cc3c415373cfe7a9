"""The preference losses equal TRL's on the same model and batch (TRL is a test-only dependency, the `dev` extra):
DPO/IPO/hinge through `DPOTrainer._compute_loss` (loss, rewards, margins, accuracy, log-probs), SimPO through
`CPOTrainer.cpo_loss`, ORPO's odds-ratio term through `ORPOTrainer.odds_ratio_loss`, each also by hand. At step 0 the
DPO loss is ln 2 and the margins 0; a batch of 8 in one step equals 1 x 8 accumulated."""

from __future__ import annotations

import copy
import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from conftest import cli, only_run_dir

trl = pytest.importorskip("trl")

ROWS = [
    {"prompt": "What is 2 + 3?", "chosen": "5", "rejected": "6"},
    {"prompt": "Compute 10-4", "chosen": "6", "rejected": "14, I think"},
    {"prompt": "Add 7 and 8.", "chosen": "15", "rejected": "16"},
]


def _models():
    import transformers

    from llmft.models import builtin

    tokenizer = transformers.AutoTokenizer.from_pretrained(builtin.tiny_bpe_path())
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=128,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    reference = transformers.GPT2LMHeadModel(config).eval()
    policy = copy.deepcopy(reference)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))  # a policy some steps away from its reference
    return tokenizer, policy, reference


def _task_and_batch(tokenizer, reference, **options):
    import datasets

    from llmft.tasks import get_task
    from llmft.tasks.options import PreferenceOptions

    task = get_task(PreferenceOptions(use_chat_template=False, **options), tokenizer, 64)
    features = task.prepare({"train": datasets.Dataset.from_list(ROWS)})
    task.reference.copy = reference
    return task, task.collator(tokenizer)(list(features["train"]))


@pytest.mark.parametrize("loss", ["sigmoid", "ipo", "hinge"])
def test_dpo_losses_rewards_and_margins_equal_trl_dpo_trainer(tmp_path, loss):
    import datasets
    from trl import DPOConfig, DPOTrainer

    tokenizer, policy, reference = _models()
    task, batch = _task_and_batch(tokenizer, reference, loss=loss, beta=0.2)
    losses, chosen, rejected, logps = task.pair_terms(policy, batch)
    args = DPOConfig(output_dir=str(tmp_path), report_to=[], beta=0.2, loss_type=[loss], use_cpu=True, bf16=False)
    trainer = DPOTrainer(
        model=policy, ref_model=reference, args=args, train_dataset=datasets.Dataset.from_list(ROWS), processing_class=tokenizer
    )
    inputs = {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "completion_mask": (batch["labels"] != -100).long(),
    }  # TRL's layout: [chosen..., rejected...]
    trainer.model.train()
    theirs = trainer._compute_loss(trainer.model, inputs, False)
    logged = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    assert abs(losses.mean().item() - theirs.item()) < 1e-5
    ours = {
        "rewards/chosen": chosen.mean(),
        "rewards/rejected": rejected.mean(),
        "rewards/margins": (chosen - rejected).mean(),
        "rewards/accuracies": (chosen > rejected).float().mean(),
        "logps/chosen": logps[:, 0].mean(),
        "logps/rejected": logps[:, 1].mean(),
    }
    for key, value in ours.items():
        assert abs(value.item() - logged[key]) < 1e-5, key


def _averaged(task, policy, batch):
    logps = task.pair_scores(policy, batch)
    tokens = (batch["labels"][:, 1:] != -100).sum(-1).view(2, -1).t()
    return logps / tokens, logps


def test_simpo_equals_trl_cpo_loss_and_the_formula(tmp_path):
    from trl.experimental.cpo import CPOTrainer

    tokenizer, policy, reference = _models()
    task, batch = _task_and_batch(tokenizer, reference, loss="simpo", beta=2.0, simpo_gamma=0.5)
    losses, chosen, rejected, _ = task.pair_terms(policy, batch)
    avg, _ = _averaged(task, policy, batch)
    fake = SimpleNamespace(
        beta=2.0,
        simpo_gamma=0.5,
        loss_type="simpo",
        label_smoothing=0.0,
        alpha=0.0,
        accelerator=SimpleNamespace(device=torch.device("cpu")),
    )
    theirs, their_chosen, their_rejected = CPOTrainer.cpo_loss(fake, avg[:, 0], avg[:, 1])
    torch.testing.assert_close(losses, theirs, atol=1e-5, rtol=0)
    torch.testing.assert_close(chosen, their_chosen, atol=1e-5, rtol=0)
    torch.testing.assert_close(rejected, their_rejected, atol=1e-5, rtol=0)
    hand = -F.logsigmoid(2.0 * (avg[:, 0] - avg[:, 1]) - 0.5)
    torch.testing.assert_close(losses, hand, atol=1e-5, rtol=0)


def test_orpo_equals_trl_odds_ratio_loss_plus_the_chosen_nll(tmp_path):
    from trl.experimental.orpo import ORPOTrainer

    tokenizer, policy, reference = _models()
    task, batch = _task_and_batch(tokenizer, reference, loss="orpo", beta=0.1)
    losses, chosen, rejected, _ = task.pair_terms(policy, batch)
    avg, _ = _averaged(task, policy, batch)
    fake = SimpleNamespace(beta=0.1, accelerator=SimpleNamespace(device=torch.device("cpu")))
    ratio_losses, their_chosen, their_rejected, _, _ = ORPOTrainer.odds_ratio_loss(fake, avg[:, 0], avg[:, 1])
    torch.testing.assert_close(losses, -avg[:, 0] - ratio_losses, atol=1e-5, rtol=0)  # TRL: nll - beta * log sigma(...)
    torch.testing.assert_close(chosen, their_chosen, atol=1e-5, rtol=0)
    torch.testing.assert_close(rejected, their_rejected, atol=1e-5, rtol=0)


def test_sft_weight_adds_the_chosen_nll_per_token():
    tokenizer, policy, reference = _models()
    task, batch = _task_and_batch(tokenizer, reference, sft_weight=0.5)
    plain, _ = _task_and_batch(tokenizer, reference)
    avg, _ = _averaged(task, policy, batch)
    with_sft = task.pair_terms(policy, batch)[0]
    torch.testing.assert_close(with_sft, plain.pair_terms(policy, batch)[0] - 0.5 * avg[:, 0], atol=1e-6, rtol=0)


def test_at_step_zero_the_dpo_loss_is_ln2_and_the_margin_zero():
    tokenizer, _, reference = _models()
    task, batch = _task_and_batch(tokenizer, reference)
    losses, chosen, rejected, _ = task.pair_terms(copy.deepcopy(reference), batch)
    torch.testing.assert_close(losses, torch.full_like(losses, math.log(2)), atol=1e-6, rtol=0)
    assert (chosen - rejected).abs().max() < 1e-6


def _eval_after_two_steps(tmp_path, batch: int, accumulate: int) -> dict:
    cli(
        [
            "train",
            "task=dpo",
            "model=tiny-gpt2",
            "model.dropout=0.0",
            "trainer.progress=false",
            "optimizer.lr=1e-3",
            "task.data.max_train_samples=16",
            "task.data.max_eval_samples=16",
            "trainer.max_steps=2",
            f"trainer.batch_size={batch}",
            f"trainer.grad_accum_steps={accumulate}",
            "trainer.micro_batch_size=" + str(batch),
        ],
        tmp_path,
    )
    records = [json.loads(x) for x in (only_run_dir(tmp_path) / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [r for r in records if "eval/loss" in r][-1]


def test_a_batch_of_8_equals_1_x_8_accumulated(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    whole, accumulated = _eval_after_two_steps(tmp_path / "a", 8, 1), _eval_after_two_steps(tmp_path / "b", 1, 8)
    for key in ("eval/loss", "eval/rewards/margins", "eval/logps/chosen"):
        assert abs(whole[key] - accumulated[key]) < 1e-5, (key, whole[key], accumulated[key])
    assert abs(whole["eval/rewards/margins"]) > 1e-4  # the two steps moved the policy
