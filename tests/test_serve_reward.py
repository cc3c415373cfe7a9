"""`llmft serve` on a reward run (task=reward): /v1/classify answers each text's reward, the value `llmft generate
prompt=...` prints for it, batched by the server's batcher; `llmft generate input=pairs.jsonl` prints both rewards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli, only_run_dir

pytest.importorskip("fastapi")

RUN = [
    "task=reward",
    "model=tiny-gpt2",
    "trainer.progress=false",
    "model.dropout=0.0",
    "task.data.max_train_samples=16",
    "task.data.max_eval_samples=8",
    "trainer.batch_size=8",
    "trainer.max_steps=2",
    "optimizer.lr=1e-3",
]
TEXTS = ["What is 2 + 3? 5", "What is 2 + 3? 6", "Compute 10-4"]


def _printed(run: Path, cwd: Path, text: str) -> float:
    proc = cli(["generate", f"run={run}", f"prompt='{text}'"], cwd=cwd)
    return json.loads(proc.stdout.strip().splitlines()[-1])["reward"]


def test_classify_answers_the_reward_generate_prints(tmp_path):
    import httpx

    from llmft.commands.open_run import load_predictor
    from llmft.deploy_config import ServeConfig
    from llmft.serving.app import build_app
    from llmft.serving.served_model import ServedModel
    from llmft.serving.server import BackgroundServer

    cli(["train", *RUN], cwd=tmp_path)
    run = only_run_dir(tmp_path / "outputs")
    expected = [_printed(run, tmp_path, t) for t in TEXTS]
    assert len(set(expected)) == len(TEXTS)  # different texts, different rewards
    task, model, tokenizer, max_length = load_predictor(ServeConfig(run=str(run)))
    served = ServedModel("tiny-reward", task, model, tokenizer, max_length, "cpu", task.cfg.generation, 8)
    with BackgroundServer(build_app(served, max_batch_size=8, batch_window_ms=200)) as url:
        single = httpx.post(f"{url}/v1/classify", json={"input": TEXTS[0], "model": "tiny-reward"}, timeout=30).json()
        batched = httpx.post(f"{url}/v1/classify", json={"input": TEXTS}, timeout=30).json()
        too_long = httpx.post(f"{url}/v1/classify", json={"input": "word " * 400}, timeout=30).json()["error"]
    assert single["data"][0]["label"] == "reward" and single["data"][0]["score"] == pytest.approx(expected[0], abs=1e-5)
    assert [d["index"] for d in batched["data"]] == [0, 1, 2]
    for got, want in zip(batched["data"], expected):  # padded together in one batch: equal up to float rounding
        assert got["score"] == pytest.approx(want, abs=1e-5) and got["scores"] == {"reward": got["score"]}
    assert too_long["code"] == "context_length_exceeded"
