"""The speed options keep the data and the math: length grouping reorders but never drops or repeats a row, sharded
eval orders score every row once, fused optimizers are the default, and trainer.compile runs through the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import FAST, only_run_dir, run_cli
from llmft.config import OptimizerConfig
from llmft.data.loading import EpochSampler
from llmft.engine.optim import build_optimizer


def _lengths(n: int = 1000) -> list[int]:
    return [int(x) for x in torch.randint(5, 200, (n,), generator=torch.Generator().manual_seed(1))]


def test_length_grouping_keeps_every_row_and_cuts_padding():
    lengths = _lengths()
    plain = list(EpochSampler(1000, seed=3, shuffle=True))
    grouped = list(EpochSampler(1000, seed=3, shuffle=True, lengths=lengths, batch_size=16))
    assert sorted(grouped) == list(range(1000))

    def padded(order: list[int]) -> int:
        return sum(16 * max(lengths[i] for i in order[k : k + 16]) for k in range(0, 1000, 16))

    assert padded(grouped) < 0.7 * padded(plain)
    assert max(lengths[i] for i in grouped[:16]) == max(lengths)  # the longest batch first: an OOM shows at step 1
    again = EpochSampler(1000, seed=3, shuffle=True, lengths=lengths, batch_size=16)
    again.set_position(1, 0)
    assert list(again) != grouped  # reshuffled each epoch, deterministically (resume relies on it)


def test_sharded_eval_orders_cover_every_row_once():
    lengths = _lengths(101)
    shards = [list(EpochSampler(101, 0, False, rank=r, world=2, lengths=lengths, batch_size=8, wrap=False)) for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == list(range(101))
    assert [lengths[i] for i in shards[0]] == sorted((lengths[i] for i in shards[0]), reverse=True)  # longest first


def test_fused_optimizer_by_default_on_cpu():
    model = torch.nn.Linear(4, 2)
    assert build_optimizer(OptimizerConfig(), model).defaults["fused"] is True
    assert not build_optimizer(OptimizerConfig(fused=False), model).defaults.get("fused")


@pytest.mark.slow
def test_compiled_model_trains_from_the_cli(tmp_path):
    run_cli(["train", *FAST, "trainer.max_steps=4", "trainer.log_every=1", "trainer.compile=true"], cwd=tmp_path, timeout=900)
    run = only_run_dir(tmp_path / "outputs")
    losses = [r["train/loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "train/loss" in r]
    assert len(losses) == 4 and all(loss == loss for loss in losses)
    assert json.loads((run / "eval.json").read_text())["metrics"]["accuracy"] >= 0


def test_a_second_run_on_the_same_data_does_not_tokenize_again(tmp_path, monkeypatch):
    import uuid

    from hydra import compose, initialize_config_dir

    from conftest import write_jsonl
    from llmft.commands.setup import build_run
    from llmft.cli import register_recipes
    from llmft.commands.common import to_typed
    from llmft.cli import register_configs
    from llmft.config import TrainConfig
    from llmft.paths import conf_dir
    from llmft.tasks.causal_lm import CausalLMTask

    tag = uuid.uuid4().hex  # data no earlier run has seen
    data = write_jsonl(tmp_path / "corpus.jsonl", [{"text": f"row {i} of {tag}: the quick brown fox"} for i in range(60)])
    calls: list[int] = []
    encode = CausalLMTask.encode
    monkeypatch.setattr(
        CausalLMTask, "encode", lambda self, row, *args, **kwargs: calls.append(1) or encode(self, row, *args, **kwargs)
    )
    register_configs()
    register_recipes()

    def build(max_length: int) -> None:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = compose(
                "train",
                overrides=[
                    "task=textgen",
                    "model=tiny-gpt2",
                    f"task.data.path={data}",
                    f"model.max_length={max_length}",
                    "task.chunk_text=false",
                ],
            )  # rows one by one (CausalLMTask.encode)
        build_run(to_typed(cfg, TrainConfig))  # a fresh task and tokenizer, as in a new process

    build(64)
    first = len(calls)
    assert first == 60  # train, eval and test carved from the 60 rows
    build(64)
    assert len(calls) == first  # every split came from the cache
    build(32)
    assert len(calls) == 2 * first  # another max length: tokenized again
