"""`llmft serve` on an embedding run: /v1/embeddings in OpenAI's shape (floats, and base64 through the real openai
client) returns the vectors `llmft generate` prints, batched by the server's batcher; too-long inputs are refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import cli, only_run_dir

pytest.importorskip("fastapi")
pytest.importorskip("openai")
pytest.importorskip("sentence_transformers")

RUN = [
    "task=embedding",
    "model=tiny-bert",
    "task.data.max_train_samples=32",
    "task.data.max_eval_samples=16",
    "trainer.batch_size=16",
    "trainer.max_steps=2",
    "trainer.progress=false",
    "model.dropout=0.0",
]
TEXTS = ["The doctor bought the car in the morning.", "A physician purchased an automobile at dawn.", "Rain."]


def _printed(run: Path, cwd: Path, text: str) -> list[float]:
    proc = cli(["generate", f"run={run}", f"prompt='{text}'"], cwd=cwd)
    return json.loads(proc.stdout.strip().splitlines()[-1])["embedding"]


def test_embeddings_equal_llmft_generate_and_batch(tmp_path):
    import httpx
    import openai

    from llmft.commands.open_run import load_predictor
    from llmft.deploy_config import ServeConfig
    from llmft.serving.app import build_app
    from llmft.serving.served_model import ServedModel
    from llmft.serving.server import BackgroundServer

    cli(["train", *RUN], cwd=tmp_path)
    run = only_run_dir(tmp_path / "outputs")
    expected = [_printed(run, tmp_path, t) for t in TEXTS]
    task, model, tokenizer, max_length = load_predictor(ServeConfig(run=str(run)))
    served = ServedModel("tiny-embed", task, model, tokenizer, max_length, "cpu", task.cfg.generation, 8)
    with BackgroundServer(build_app(served, max_batch_size=8, batch_window_ms=200)) as url:
        single = httpx.post(f"{url}/v1/embeddings", json={"input": TEXTS[0], "model": "tiny-embed"}, timeout=30).json()
        assert single["object"] == "list" and single["model"] == "tiny-embed"
        assert single["data"] == [{"object": "embedding", "index": 0, "embedding": expected[0]}]  # alone: equal to the float
        assert single["usage"]["prompt_tokens"] == single["usage"]["total_tokens"] == len(tokenizer(TEXTS[0])["input_ids"])

        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        batched = client.embeddings.create(model="tiny-embed", input=TEXTS)  # base64 on the wire, decoded by the client
        assert [d.index for d in batched.data] == [0, 1, 2]
        for got, want in zip(batched.data, expected):  # padded together in one batch: equal up to float rounding
            np.testing.assert_allclose(got.embedding, want, atol=1e-5)
        too_long = httpx.post(f"{url}/v1/embeddings", json={"input": ["ok", "word " * 400]}, timeout=30).json()["error"]
        assert (too_long["param"], too_long["code"]) == ("input", "context_length_exceeded")
        wrong = httpx.post(f"{url}/v1/embeddings", json={"input": "ok", "dimensions": 3}, timeout=30).json()["error"]
        assert wrong["code"] == "invalid_dimensions"
        assert httpx.post(f"{url}/v1/classify", json={"input": "ok"}, timeout=30).json()["error"]["code"] == "unsupported_model"
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
    batches = [float(x) for x in re.findall(r'^llmft_batch_size_bucket\{le="(?:1|2)\.0"\} (\S+)$', metrics, re.M)]
    count = float(re.search(r"^llmft_batch_size_count (\S+)$", metrics, re.M).group(1))
    assert count > batches[-1], metrics  # the three texts ran as one batch of more than two
