"""task=kto and task=reward: each trains through the CLI on the bundled data (tiny GPT-2) and its run answers
`llmft generate` (a KTO run generates as a causal LM; a reward run prints each row's reward); their losses and
metrics equal TRL's KTOTrainer and RewardTrainer on the same model and batch."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from conftest import cli, only_run_dir

SMALL = [
    "model=tiny-gpt2",
    "trainer.progress=false",
    "model.dropout=0.0",
    "task.data.max_train_samples=32",
    "task.data.max_eval_samples=16",
    "trainer.batch_size=8",
    "trainer.max_steps=3",
    "optimizer.lr=1e-3",
]


def test_kto_trains_and_the_run_generates_as_a_causal_lm(tmp_path):
    cli(["train", "task=kto", *SMALL], tmp_path)
    run = only_run_dir(tmp_path)
    metrics = json.loads((run / "eval.json").read_text())["metrics"]
    assert {"loss", "kl", "rewards/chosen", "rewards/rejected", "rewards/margins"} <= metrics.keys()
    (tmp_path / "in.jsonl").write_text('{"prompt": "What is 2 + 3?"}\n')
    out = cli(["generate", f"run={run}", f"input={tmp_path / 'in.jsonl'}", "generation.max_new_tokens=3"], tmp_path).stdout
    assert "generation" in json.loads(out.strip().splitlines()[-1])


def test_a_kto_row_without_a_true_or_false_label_is_one_line(tmp_path):
    data = tmp_path / "rows.jsonl"
    rows = [{"prompt": "1 + 1 =", "completion": "2", "label": True}] * 6 + [
        {"prompt": "1 + 1 =", "completion": "3", "label": "maybe"}
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows + rows[:5]))
    proc = cli(
        ["train", "task=kto", "model=tiny-gpt2", f"task.data.path={data}", "trainer.max_steps=1", "task.data.carve_ratio=0.2"],
        tmp_path,
        check=False,
    )
    assert proc.returncode == 2 and "line 7 of" in proc.stderr and "label must be true or false" in proc.stderr


def test_reward_model_trains_and_generate_prints_rewards(tmp_path):
    cli(["train", "task=reward", *SMALL], tmp_path)
    run = only_run_dir(tmp_path)
    config = json.loads((run / "checkpoints" / "best" / "config.json").read_text())
    assert config["architectures"][0].endswith("ForSequenceClassification") and len(config["id2label"]) == 1
    metrics = json.loads((run / "eval.json").read_text())["metrics"]
    assert 0.0 <= metrics["accuracy"] <= 1.0 and "rewards/margins" in metrics
    (tmp_path / "in.jsonl").write_text(
        '{"prompt": "What is 2 + 3?", "chosen": "5", "rejected": "6"}\n{"prompt": "What is 2 + 3?", "completion": "5"}\n'
    )
    out = cli(["generate", f"run={run}", f"input={tmp_path / 'in.jsonl'}"], tmp_path).stdout.strip().splitlines()
    pair, single = json.loads(out[-2]), json.loads(out[-1])
    assert isinstance(pair["reward_chosen"], float) and isinstance(pair["reward_rejected"], float)
    assert abs(single["reward"] - pair["reward_chosen"]) < 1e-5  # the same text scores the same
    line = cli(["generate", f"run={run}", "prompt=What is 2 + 3? 5"], tmp_path).stdout.strip().splitlines()[-1]
    assert isinstance(json.loads(line)["reward"], float)


def _tiny(cls_name: str, tokenizer, **kwargs):
    import transformers

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
        pad_token_id=tokenizer.pad_token_id,
        **kwargs,
    )
    return getattr(transformers, cls_name)(config)


def _tokenizer():
    import transformers

    from llmft.models import builtin

    return transformers.AutoTokenizer.from_pretrained(builtin.tiny_bpe_path())


KTO_ROWS = [
    {"prompt": "What is 2 + 3?", "completion": "5", "label": True},
    {"prompt": "Compute 10-4", "completion": "14, I think", "label": False},
    {"prompt": "Add 7 and 8.", "completion": "15", "label": True},
    {"prompt": "What is 9 - 1?", "completion": "7", "label": False},
]


def test_kto_loss_and_rewards_equal_trl_kto_trainer(tmp_path):
    pytest.importorskip("trl")
    import datasets
    from trl import KTOConfig, KTOTrainer

    from llmft.tasks import get_task
    from llmft.tasks.options import KTOOptions

    tokenizer = _tokenizer()
    reference = _tiny("GPT2LMHeadModel", tokenizer).eval()
    policy = copy.deepcopy(reference)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    task = get_task(KTOOptions(use_chat_template=False, beta=0.2, desirable_weight=1.5, undesirable_weight=0.7), tokenizer, 64)
    features = task.prepare({"train": datasets.Dataset.from_list(KTO_ROWS)})
    task.reference.copy = reference
    batch = task.collator(tokenizer)(list(features["train"]))
    losses, rewards, logps, kl = task.row_terms(policy, batch)
    args = KTOConfig(
        output_dir=str(tmp_path),
        report_to=[],
        beta=0.2,
        desirable_weight=1.5,
        undesirable_weight=0.7,
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=4,
    )
    trainer = KTOTrainer(
        model=policy,
        ref_model=reference,
        args=args,
        train_dataset=datasets.Dataset.from_list(KTO_ROWS),
        processing_class=tokenizer,
    )
    n = len(KTO_ROWS)
    mask = (batch["labels"] != -100).long()
    inputs = {
        "input_ids": batch["input_ids"][:n],
        "attention_mask": batch["attention_mask"][:n],
        "completion_mask": mask[:n],
        "KL_input_ids": batch["input_ids"][n:],
        "KL_attention_mask": batch["attention_mask"][n:],
        "KL_completion_mask": mask[n:],
        "label": batch["desirable"],
    }
    trainer.model.train()
    theirs = trainer._compute_loss(trainer.model, inputs, False)
    logged = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    good = batch["desirable"]
    assert abs(losses.mean().item() - theirs.item()) < 1e-5
    assert abs(kl.item() - logged["kl"]) < 1e-5
    assert abs(rewards[good].mean().item() - logged["rewards/chosen"]) < 1e-5
    assert abs(rewards[~good].mean().item() - logged["rewards/rejected"]) < 1e-5
    assert abs(logps[good].mean().item() - logged["logps/chosen"]) < 1e-5


def test_reward_loss_and_accuracy_equal_trl_reward_trainer(tmp_path):
    pytest.importorskip("trl")
    import datasets
    from trl import RewardConfig, RewardTrainer

    from llmft.tasks import get_task
    from llmft.tasks.options import RewardOptions
    from llmft.tasks.reward import pair_rewards

    tokenizer = _tokenizer()
    model = _tiny("GPT2ForSequenceClassification", tokenizer, num_labels=1)
    rows = [
        {"prompt": r["prompt"], "chosen": c, "rejected": w}
        for r, c, w in zip(KTO_ROWS, ["5", "6", "15", "8"], ["6", "14", "16", "7"])
    ]
    task = get_task(RewardOptions(use_chat_template=False), tokenizer, 64)
    features = task.prepare({"train": datasets.Dataset.from_list(rows)})
    batch = task.collator(tokenizer)(list(features["train"]))
    ours = task.loss_sum(model, batch) / task.count(batch)
    chosen, rejected = pair_rewards(model, batch)
    args = RewardConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, bf16=False)
    trainer = RewardTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer)
    trainer.model.train()
    theirs = trainer.compute_loss(trainer.model, {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})
    logged = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    assert abs(ours.item() - theirs.item()) < 1e-5
    assert abs((chosen > rejected).float().mean().item() - logged["accuracy"]) < 1e-6
    assert abs((chosen - rejected).mean().item() - logged["margin"]) < 1e-5
