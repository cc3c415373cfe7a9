"""Length-grouped training batches are the default where they hold quality (classification: a per-row loss) and off
where they cost it (token-level losses, extractive QA); the switch still works both ways, and a grouped run that is
stopped and resumed equals an unbroken one."""

from __future__ import annotations

import json
import signal

import pytest

from conftest import cli, only_run_dir
from llmft.data.batches import TokenBatches

SMALL = ["task.data.max_train_samples=64", "task.data.max_eval_samples=16", "trainer.batch_size=8"]


def _plan(overrides: list[str]):
    """The train loader and plan `llmft train OVERRIDES` would build."""
    from test_audit_promises import _compose

    from llmft.commands.setup import build_run
    from llmft.commands.common import to_typed
    from llmft.config import TrainConfig

    parts = build_run(to_typed(_compose([*SMALL, *overrides]), TrainConfig))
    return parts.train_loader.batch_sampler, parts.plan


@pytest.mark.parametrize(
    "overrides, grouped",
    [
        (["task=sentiment", "model=tiny-bert"], "rows"),
        (["task=classification", "task.data.path=builtin:sentiment", "model=tiny-bert"], "rows"),
        (["task=sentiment", "model=tiny-bert", "trainer.group_by_length=false"], None),
        (["task=qa", "model=tiny-bert", "task.doc_stride=16"], None),
        (["task=ner", "model=tiny-bert"], None),  # the bundled sentences: random batches would pad only ~1.5x
        (["task=ner", "model=tiny-bert", "trainer.group_by_length=true"], "tokens"),
        (["task=sft", "model=tiny-gpt2"], None),
        (["task=summarization", "model=tiny-t5"], None),
        (["task=sft", "model=tiny-gpt2", "trainer.group_by_length=true"], "tokens"),
    ],
)
def test_each_family_gets_its_default_and_the_switch_wins(overrides, grouped):
    """Grouped batches hold equal rows where the loss is a sum over rows, equal tokens where it averages over tokens."""
    batches, plan = _plan(overrides)
    assert plan["group_by_length"] is (grouped is not None)
    assert _kind(batches) == grouped
    assert ("batches" in plan) is (grouped == "tokens")


def _kind(batches) -> str | None:
    if isinstance(batches, TokenBatches):
        return "tokens"
    return "rows" if batches.sampler.lengths is not None else None


def test_ner_groups_into_equal_token_batches_where_lengths_vary(tmp_path):
    """NER's default: grouped (equal tokens) when random batches would pad at least 2x their tokens, as on
    CoNLL-2003's mix of headlines and long sentences; random batches on even lengths (the bundled sentences)."""
    import random

    from llmft.data.batches import random_padding

    assert random_padding([4] * 24 + [40] * 8, 8) == pytest.approx(40 * 32 / (4 * 24 + 40 * 8), rel=0.3)
    assert random_padding([12] * 64, 8) == 1.0
    rng = random.Random(0)
    words = [rng.choice([1, 2, 3, 4]) if rng.random() < 0.3 else rng.randint(10, 60) for _ in range(96)]
    rows = [{"tokens": ["Paris"] * n, "ner_tags": ["B-LOC"] * n} for n in words]
    path = tmp_path / "varied.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    batches, plan = _plan(["task=ner", "model=tiny-bert", f"task.data.path={path}"])
    assert plan["group_by_length"] is True and _kind(batches) == "tokens"
    even, plan = _plan(["task=ner", "model=tiny-bert"])
    assert plan["group_by_length"] is False and _kind(even) is None


def test_the_resume_tests_train_grouped():
    """test_resume's kill -9 run uses the default task: it now proves exact resume of a grouped order too."""
    from test_resume import RUN

    batches, plan = _plan([o for o in RUN if not o.startswith(("task.data.max_", "trainer.batch_size"))])
    assert plan["group_by_length"] is True and _kind(batches) == "rows"


@pytest.mark.parametrize("task", ["sentiment", "ner"])  # NER: grouped on request (equal-token batches)
def test_a_grouped_run_stopped_mid_epoch_resumes_to_the_unbroken_run(tmp_path, monkeypatch, task):
    """Row-grouped (sentiment) and token-grouped (NER) batches: the same order and the same steps after a resume."""
    import llmft.engine.loop as loop

    args = [
        "train",
        f"task={task}",
        "trainer.group_by_length=true",
        "model=tiny-bert",
        "task.data.max_train_samples=96",
        "task.data.max_eval_samples=16",
        "trainer.batch_size=16",
        "trainer.epochs=2",
        "trainer.log_every=1",
        "trainer.eval_every=4",
        "trainer.progress=false",
        "optimizer.lr=1e-3",
    ]
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    unbroken.mkdir(), broken.mkdir()
    cli(args, cwd=unbroken)
    step = loop.optimizer_step

    def step_then_term(parts, group, state):  # a SIGTERM during step 4 of 6 in epoch 1: stop after it, save, exit
        out = step(parts, group, state)
        if state.step == 3:
            signal.raise_signal(signal.SIGTERM)
        return out

    monkeypatch.setattr(loop, "optimizer_step", step_then_term)
    assert cli(args, cwd=broken, check=False).returncode == 128 + signal.SIGTERM
    monkeypatch.undo()
    run = only_run_dir(broken / "outputs")
    assert json.loads((run / "checkpoints" / "last" / "loop_state.json").read_text())["step"] == 4
    cli(["train", f"trainer.resume={run}", "trainer.progress=false"], cwd=broken)

    def records(folder):
        return [
            {k: v for k, v in json.loads(line).items() if not k.endswith("per_s") and "time" not in k}
            for line in (folder / "metrics.jsonl").read_text().splitlines()
        ]

    reference = only_run_dir(unbroken / "outputs")
    assert json.loads((reference / "run.json").read_text())["plan"]["group_by_length"] is True
    assert records(run) == records(reference)  # same losses, lrs and evals at every step, across the epoch boundary
    assert json.loads((run / "eval.json").read_text())["metrics"] == json.loads((reference / "eval.json").read_text())["metrics"]


def test_cuda_padded_batches_leave_cudnn_attention_packed_ones_keep_it():
    """cuDNN attention plans per sequence length: on an H100 padded bf16 steps ran 2.3-2.6x faster without it, packed
    ones 1.26x faster with it (engine/attention.py). The switch is set for CUDA runs only; asking wins."""
    import torch

    from llmft.engine import attention

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    before = torch.backends.cuda.cudnn_sdp_enabled()
    try:
        assert attention.apply(None, cpu, fixed_length=False) is None and torch.backends.cuda.cudnn_sdp_enabled() == before
        assert attention.apply(None, cuda, fixed_length=False) is False and not torch.backends.cuda.cudnn_sdp_enabled()
        assert attention.apply(None, cuda, fixed_length=True) is True and torch.backends.cuda.cudnn_sdp_enabled()
        assert attention.apply(False, cuda, fixed_length=True) is False and not torch.backends.cuda.cudnn_sdp_enabled()
        assert attention.apply(True, cuda, fixed_length=False) is True
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before)


def test_grouping_default_is_the_tasks_whatever_the_precision():
    from llmft.commands.setup import _group_by_length

    def chosen(asked, default):
        return _group_by_length(asked, default, {}, None, 8)

    assert chosen(None, True) is True and chosen(None, False) is False
    assert chosen(False, True) is False and chosen(True, False) is True and chosen(False, None) is False
