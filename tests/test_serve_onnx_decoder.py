"""`llmft serve backend=onnx` on a decoder: a tiny-gpt2 chat run exported by `llmft export` (its graph with a KV cache)
answers /v1/chat/completions and /v1/completions through the real server and the `openai` client as the torch backend
answers them: the same greedy texts, seeded samples, n choices, stop strings, finish reasons, usage, logprobs (within
the export's logit difference) and streamed text."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from conftest import cli, only_run_dir

pytest.importorskip("fastapi")
pytest.importorskip("openai")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

PROMPTS = ["What is 2 + 3?", "Tell me a story about a cat and a dog, please."]


@pytest.fixture(scope="module")
def exported_chat(tmp_path_factory) -> Path:
    """A tiny-gpt2 chat run (ChatML template) with its ONNX export (KV cache) in <run>/export/onnx."""
    root = tmp_path_factory.mktemp("serve_onnx_decoder")
    train = ["task=chat", "model=tiny-gpt2", "trainer.max_steps=2", "trainer.batch_size=8", "trainer.progress=false"]
    data = ["task.data.max_train_samples=16", "task.data.max_eval_samples=8", "task.generation.repetition_penalty=2.0"]
    cli(["train", *train, *data], cwd=root)
    run = only_run_dir(root / "outputs")
    cli(["export", f"run={run}", "verify_rows=4"], cwd=root)
    return run


async def _streamed(client, **args) -> str:
    chunks = [c async for c in await client.chat.completions.create(stream=True, **args)]
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _answers(served) -> dict:
    """What the server answers to a fixed set of requests, as plain data (texts, finish reasons, usage, logprobs)."""
    import openai

    from llmft.serving.app import build_app
    from llmft.serving.server import BackgroundServer

    chat = [{"role": "user", "content": PROMPTS[0]}]
    with BackgroundServer(build_app(served, max_batch_size=4, batch_window_ms=50)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        greedy = client.completions.create(model=served.name, prompt=PROMPTS, max_tokens=10, temperature=0)
        sampled = client.completions.create(
            model=served.name, prompt=PROMPTS[1], max_tokens=10, temperature=0.9, top_p=0.9, seed=7, n=2
        )
        stopped = client.completions.create(model=served.name, prompt=PROMPTS[1], max_tokens=10, temperature=0, stop=["e"])
        answer = client.chat.completions.create(
            model=served.name, messages=chat, max_tokens=10, temperature=0, logprobs=True, top_logprobs=2
        )
        stream_client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        streamed = asyncio.run(_streamed(stream_client, model=served.name, messages=chat, max_tokens=10, temperature=0))
    texts = {
        "greedy": [(c.text, c.finish_reason) for c in greedy.choices],
        "sampled": [(c.text, c.finish_reason) for c in sampled.choices],
        "stopped": [(c.text, c.finish_reason) for c in stopped.choices],
        "chat": (answer.choices[0].message.content, answer.choices[0].finish_reason),
        "streamed": streamed,
    }
    usage = [r.usage.model_dump() for r in (greedy, sampled, stopped, answer)]
    logprobs = [(t.token, t.logprob, [(u.token, u.logprob) for u in t.top_logprobs]) for t in answer.choices[0].logprobs.content]
    return {"texts": texts, "usage": usage, "logprobs": logprobs}


def test_onnx_backend_generates_as_the_torch_backend(exported_chat):
    from llmft.commands.open_run import saved_run_config
    from llmft.commands.serve import load_served
    from llmft.deploy_config import ServeConfig
    from llmft.inference.onnx_lm import OnnxCausalLM
    from llmft.serving.onnx_model import load_onnx_model

    expected = _answers(load_served(ServeConfig(run=str(exported_chat))))
    served = load_onnx_model("tiny-chat", exported_chat, saved_run_config(exported_chat), None)
    assert isinstance(served.model, OnnxCausalLM)
    got = _answers(served)
    assert got["texts"] == expected["texts"]
    assert got["texts"]["streamed"] == got["texts"]["chat"][0]
    assert got["usage"] == expected["usage"] and all(u["completion_tokens"] > 0 for u in got["usage"])
    assert got["logprobs"]  # the chat answer took tokens, each with its logprob
    for (token, logprob, top), (e_token, e_logprob, e_top) in zip(got["logprobs"], expected["logprobs"], strict=True):
        assert token == e_token and abs(logprob - e_logprob) < 1e-4
        assert [t for t, _ in top] == [t for t, _ in e_top]
