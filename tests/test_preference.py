"""task=dpo (family preference): it trains through the CLI on the bundled pairs and the run is a causal LM afterwards;
each row layout masks only the completion (EOS supervised); bad rows are one line naming file and line; the reference
is the adapter-disabled policy under LoRA (no copy), a frozen copy under full fine-tuning, or log-probs scored once
and stored with the run (task.precompute_reference)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import cli, only_run_dir

GPT = ["model=tiny-gpt2", "trainer.progress=false", "model.dropout=0.0"]
SMALL = [*GPT, "task.data.max_train_samples=32", "task.data.max_eval_samples=16", "trainer.batch_size=8"]


def _records(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_dpo_trains_and_the_run_generates_as_a_causal_lm(tmp_path):
    cli(["train", "task=dpo", *SMALL, "trainer.max_steps=4", "optimizer.lr=1e-3"], tmp_path)
    run = only_run_dir(tmp_path)
    metrics = json.loads((run / "eval.json").read_text())["metrics"]
    for key in (
        "loss",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracy",
        "logps/chosen",
        "logps/rejected",
    ):
        assert key in metrics and math.isfinite(metrics[key]), key
    evals = [r for r in _records(run) if "eval/rewards/margins" in r]
    assert evals, "eval records carry the reward metrics"
    proc = cli(["generate", f"run={run}", "prompt=What is 2 + 3?", "generation.max_new_tokens=3"], tmp_path)
    assert proc.returncode == 0
    (tmp_path / "in.jsonl").write_text('{"prompt": "What is 2 + 3?"}\n')
    out = cli(["generate", f"run={run}", f"input={tmp_path / 'in.jsonl'}", "generation.max_new_tokens=3"], tmp_path).stdout
    assert "generation" in json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "row, problem",
    [
        ({"prompt": "What is 1 + 1?", "chosen": "2"}, "'rejected' is missing"),
        ({"prompt": "What is 1 + 1?", "chosen": "2", "rejected": "2"}, "chosen and rejected are the same"),
        ({"prompt": "What is one plus one, tell me please, " * 20, "chosen": "2", "rejected": "3"}, "fills model.max_length"),
    ],
)
def test_a_bad_pair_row_is_refused_in_one_line_naming_its_file_and_line(tmp_path, row, problem):
    good = {"prompt": "What is 1 + 2?", "chosen": "3", "rejected": "4"}
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [good] * 6 + [row] + [good] * 5))
    proc = cli(
        [
            "train",
            "task=dpo",
            *GPT,
            f"task.data.path={data}",
            "model.max_length=32",
            "trainer.max_steps=1",
            "task.data.carve_ratio=0.2",
        ],
        tmp_path,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert problem in proc.stderr and "line 7 of" in proc.stderr and "pairs.jsonl" in proc.stderr


def _tokenizer():
    from llmft.models import builtin
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(builtin.tiny_bpe_path())


def _supervised(tokenizer, ids, labels) -> str:
    return tokenizer.decode([t for t, lab in zip(ids, labels) if lab != -100])


@pytest.mark.parametrize("chat", [False, True])
def test_only_the_completion_and_its_end_are_supervised(chat):
    from llmft.tasks.preference_data import PairEncoder, split_pair

    tokenizer = _tokenizer()
    encoder = PairEncoder(tokenizer, 64, use_chat_template=chat)
    prompt, chosen, rejected, raw = split_pair("What is 2 + 3? Answer:", " five", " six")
    for completion, word in ((chosen, "five"), (rejected, "six")):
        ids, labels = encoder.encode(prompt, completion, raw)
        text = _supervised(tokenizer, ids, labels)
        assert word in text and "Answer" not in text and "What" not in text
        end = tokenizer.eos_token_id if not chat else tokenizer.convert_tokens_to_ids("<|im_end|>")
        assert end in [t for t, lab in zip(ids, labels) if lab != -100]  # the model learns to stop


def test_the_three_row_layouts_are_told_by_content():
    from llmft.tasks.preference_data import split_pair

    user = {"role": "user", "content": "Hi"}
    good, bad = {"role": "assistant", "content": "Hello!"}, {"role": "assistant", "content": "Go away."}
    # UltraFeedback-binarized: prompt a string, chosen/rejected whole conversations sharing the user turn
    assert split_pair("Hi", [user, good], [user, bad]) == ([user], [good], [bad], False)
    assert split_pair([user], [good], [bad]) == ([user], [good], [bad], False)
    # Anthropic HH-RLHF: transcripts, the prompt is their shared beginning up to the last "Assistant:"
    hh_c = "\n\nHuman: What is 2+2?\n\nAssistant: It is 4."
    hh_r = "\n\nHuman: What is 2+2?\n\nAssistant: It is 5."
    assert split_pair(None, hh_c, hh_r) == ("\n\nHuman: What is 2+2?\n\nAssistant:", " It is 4.", " It is 5.", True)


def _parts(tmp_path, *overrides):
    from test_audit_promises import _compose

    from llmft.commands.common import to_typed
    from llmft.commands.setup import build_run
    from llmft.config import TrainConfig

    return build_run(to_typed(_compose(["task=dpo", *SMALL, *overrides]), TrainConfig), run_dir=tmp_path)


def test_the_lora_reference_is_the_policy_with_its_adapter_off_not_a_copy(tmp_path):
    parts = _parts(tmp_path, "finetune=lora")
    reference = parts.task.reference
    assert reference.adapters and reference.copy is None
    batch = next(iter(parts.train_loader))
    loss = parts.task.loss_sum(parts.model, batch) / parts.task.count(batch)
    assert abs(loss.item() - math.log(2)) < 1e-5  # the adapter starts at zero: policy == reference


def test_full_fine_tuning_keeps_a_frozen_copy_unless_the_reference_is_precomputed(tmp_path):
    parts = _parts(tmp_path / "a")
    copy = parts.task.reference.copy
    assert copy is not None and not copy.training and not any(p.requires_grad for p in copy.parameters())
    parts = _parts(tmp_path / "b", "task.precompute_reference=true")
    assert parts.task.reference.copy is None and len(parts.task.reference.table[0]) == 32


def test_precomputed_reference_is_stored_with_the_run_and_resume_reads_it(tmp_path, monkeypatch):
    (tmp_path / "run").mkdir()
    parts = _parts(tmp_path / "run", "task.precompute_reference=true")
    stored = torch.load(tmp_path / "run" / "reference_logps.pt")
    assert stored["0"].shape == (32, 2)
    from llmft.tasks.reference import Reference

    def refuse(*args, **kwargs):
        raise AssertionError("the reference scored again")

    monkeypatch.setattr(Reference, "context", refuse)  # the one way in to scoring with the reference
    again = _parts(tmp_path / "run", "task.precompute_reference=true")  # what a resumed run builds
    torch.testing.assert_close(again.task.reference.table[0], parts.task.reference.table[0])


FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures" / "preference"


@pytest.mark.parametrize(
    "name, extra",
    [("hh-rlhf.jsonl", []), ("ultrafeedback-binarized.jsonl", []), ("hh-rlhf.jsonl", ["finetune=lora", "task.loss=simpo"])],
)
def test_public_layouts_train_through_documented_options_only(tmp_path, name, extra):
    """Anthropic HH-RLHF transcripts and UltraFeedback-binarized message lists, as published: only the path is set."""
    cli(
        [
            "train",
            "task=dpo",
            *GPT,
            f"task.data.path={FIXTURES / name}",
            "task.data.carve_ratio=0.2",
            "trainer.batch_size=4",
            "trainer.max_steps=2",
            "model.max_length=96",
            *extra,
        ],
        tmp_path,
    )
    metrics = json.loads((only_run_dir(tmp_path) / "eval.json").read_text())["metrics"]
    assert metrics["pairs"] == 2 and math.isfinite(metrics["loss"])
