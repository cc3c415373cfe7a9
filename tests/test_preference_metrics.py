"""The preference families' metrics: the train log carries the rewards, margins, accuracy and log-probs of its steps;
the best checkpoint is picked on an eval metric of choice; `llmft eval run=<dpo run>` rebuilds the reference (the
initial model: the adapter-disabled base under LoRA, the frozen initial weights otherwise, the stored log-probs' source
with task.precompute_reference) and so scores the best checkpoint as training's final scoring did."""

from __future__ import annotations

import json

import pytest

from conftest import cli, only_run_dir

TERMS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracy", "logps/chosen", "logps/rejected")
SMALL = [
    "model=tiny-gpt2",
    "trainer.progress=false",
    "model.dropout=0.0",
    "task.data.max_train_samples=24",
    "task.data.max_eval_samples=16",
    "trainer.batch_size=8",
    "trainer.max_steps=3",
    "optimizer.lr=1e-3",
    "trainer.log_every=1",
    "trainer.eval_every=1",
]


def _records(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _scored_by_eval(run, tmp_path, *extra) -> dict:
    out = tmp_path / "ev"
    cli(["eval", f"run={run}", f"hydra.run.dir={out}", *extra], tmp_path)
    return json.loads((out / "eval.json").read_text())["metrics"]


@pytest.mark.parametrize(
    "method",
    [
        ["finetune=lora", "task.select_metric=rewards/accuracy"],
        pytest.param(["task.select_metric=loss"], marks=pytest.mark.slow),
        pytest.param(["task.precompute_reference=true"], marks=pytest.mark.slow),
    ],
)
def test_dpo_logs_its_terms_and_eval_rebuilds_the_reference(tmp_path, method):
    cli(["train", "task=dpo", *SMALL, *method], tmp_path)
    run = only_run_dir(tmp_path)
    records = _records(run)
    train = [r for r in records if "train/loss" in r]
    assert len(train) == 3 and all(f"train/{k}" in r for r in train for k in TERMS)
    assert abs(train[0]["train/rewards/margins"]) < 1e-5  # step 1 is scored before its update: policy == reference
    evals = [r for r in records if "eval/loss" in r]
    assert all(f"eval/{k}" in r for r in evals for k in TERMS)
    summary = json.loads((run / "eval.json").read_text())
    select = summary.get("select_metric") or method[-1].split("=")[1]
    values = [r[f"eval/{select}"] for r in evals]
    best = (max if select != "loss" else min)(values)
    assert summary["best_step"] == evals[values.index(best)]["step"]  # the first eval with the best value
    trained = summary["metrics"]
    rescored = _scored_by_eval(run, tmp_path)
    for key in ("loss", *TERMS):
        assert rescored[key] == pytest.approx(trained[key], abs=1e-5), key


def test_reward_train_log_has_accuracy_and_margins(tmp_path):
    cli(["train", "task=reward", *SMALL], tmp_path)
    train = [r for r in _records(only_run_dir(tmp_path)) if "train/loss" in r]
    assert train and all({"train/accuracy", "train/rewards/margins", "train/rewards/chosen"} <= r.keys() for r in train)


def test_kto_train_log_has_rewards_log_probs_and_kl_per_side(tmp_path):
    """Every train record of task=kto carries TRL's KTOTrainer terms; rewards and log-probs are means over each side's
    rows (12 desirable, 4 undesirable rows of one text: both sides' log-probs equal; over all rows they would not)."""
    rows = [{"prompt": "1 + 1 =", "completion": " 2", "label": i < 12} for i in range(16)]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    files = f"task.data.data_files={{train:{data},validation:{data},test:{data}}}"
    cli(["train", "task=kto", *SMALL[:3], files, "trainer.batch_size=16", "trainer.max_steps=2", "trainer.log_every=1"], tmp_path)
    train = [r for r in _records(only_run_dir(tmp_path)) if "train/loss" in r]
    keys = ("rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected", "kl")
    assert len(train) == 2 and all(f"train/{k}" in r for r in train for k in keys)
    assert not any(k.startswith("train/count/") for r in train for k in r)
    first = train[0]  # scored before its update: the policy is the reference
    assert first["train/rewards/chosen"] == pytest.approx(0.0, abs=1e-6) and first["train/kl"] == pytest.approx(0.0, abs=1e-6)
    assert first["train/logps/chosen"] < 0 and first["train/logps/chosen"] == pytest.approx(first["train/logps/rejected"])
