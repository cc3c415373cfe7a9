"""`llmft serve`: a tiny chat run and a tiny classifier behind the HTTP app, driven by the real `openai` client and
plain httpx on a loopback port. Served answers equal `llmft generate`'s; concurrent requests are batched; bad
requests get OpenAI-style 4xx JSON and the server keeps serving; the API key is enforced; the server stops cleanly."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from pathlib import Path

import pytest

from conftest import FAST, cli, only_run_dir, write_jsonl

pytest.importorskip("fastapi")
pytest.importorskip("openai")

PROMPT = "What is 2 + 3?"
GEN = ["generation.max_new_tokens=8"]


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory) -> Path:
    """A tiny-gpt2 chat run (ChatML template) trained for two steps: enough for a checkpoint to serve."""
    root = tmp_path_factory.mktemp("serve_chat")
    cli(
        [
            "train",
            "task=chat",
            "model=tiny-gpt2",
            "trainer.max_steps=2",
            "trainer.batch_size=8",
            "task.data.max_train_samples=16",
            "task.data.max_eval_samples=8",
            "trainer.progress=false",
            "task.generation.max_new_tokens=8",
            "task.generation.repetition_penalty=2.0",
        ],
        cwd=root,
    )  # untrained, it repeats a newline: an empty answer
    return only_run_dir(root / "outputs")


def _served(run: Path, max_batch_size: int = 8):
    from llmft.commands.open_run import load_predictor
    from llmft.deploy_config import ServeConfig
    from llmft.serving.served_model import ServedModel

    task, model, tokenizer, max_length = load_predictor(ServeConfig(run=str(run)))
    return ServedModel("tiny-chat", task, model, tokenizer, max_length, "cpu", task.cfg.generation, max_batch_size)


@pytest.fixture(scope="module")
def chat_server(chat_run):
    from llmft.serving.app import build_app
    from llmft.serving.server import BackgroundServer

    served = _served(chat_run)
    with BackgroundServer(build_app(served, max_batch_size=8, batch_window_ms=100)) as url:
        yield url, served


def _generate(run: Path, tmp_path: Path, prompt: str) -> str:
    """What `llmft generate run=... prompt=...` answers (written to a file, so it is the final text)."""
    out = tmp_path / "g.jsonl"
    cli(["generate", f"run={run}", f"prompt={prompt}", f"output={out}", *GEN], cwd=tmp_path)
    return json.loads(out.read_text())["generation"]


def _client(url: str, key: str = "none"):
    import openai

    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def test_answers_equal_llmft_generate_plain_and_streamed(chat_run, chat_server, tmp_path):
    url, _ = chat_server
    expected = _generate(chat_run, tmp_path, PROMPT)
    client = _client(url)
    assert [m.id for m in client.models.list().data] == ["tiny-chat"]
    chat = client.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": PROMPT}], max_tokens=8)
    assert expected and chat.choices[0].message.content == expected and chat.usage.prompt_tokens > 0
    completion = client.completions.create(model="tiny-chat", prompt=PROMPT, max_tokens=8, temperature=0)
    assert completion.choices[0].text == expected
    streamed = client.chat.completions.create(
        model="tiny-chat", messages=[{"role": "user", "content": PROMPT}], max_tokens=8, stream=True
    )
    chunks = list(streamed)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    pieces = client.completions.create(model="tiny-chat", prompt=PROMPT, max_tokens=8, stream=True)
    assert "".join(c.choices[0].text for c in pieces) == expected


def test_concurrent_requests_are_batched(chat_server):
    import openai

    url, _ = chat_server
    reference = _client(url).completions.create(prompt=PROMPT, model="tiny-chat", max_tokens=8).choices[0].text

    async def fire() -> list[str]:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        answers = await asyncio.gather(
            *(client.completions.create(model="tiny-chat", prompt=PROMPT, max_tokens=8) for _ in range(8))
        )
        await client.close()
        return [a.choices[0].text for a in answers]

    assert asyncio.run(fire()) == [reference] * 8  # the same prompt: no padding, so batched equals alone
    text = _get(url, "/metrics").text
    count = float(re.search(r"^llmft_batch_size_count (\S+)$", text, re.M).group(1))
    singles = float(re.search(r'^llmft_batch_size_bucket\{le="1\.0"\} (\S+)$', text, re.M).group(1))
    assert count > singles, text  # at least one batch held more than one request
    assert re.search(r'^llmft_requests_total\{route="/v1/completions",status="200"\} ([1-9]\d*)\.0$', text, re.M)
    assert float(re.search(r"^llmft_generated_tokens_total (\S+)$", text, re.M).group(1)) > 0
    assert "llmft_request_latency_seconds_bucket" in text


def _get(url: str, path: str, **kwargs):
    import httpx

    return httpx.get(url + path, timeout=30, **kwargs)


def _post(url: str, path: str, **kwargs):
    import httpx

    return httpx.post(url + path, timeout=30, **kwargs)


@pytest.mark.parametrize(
    "path, body, status, param, code",
    [
        ("/v1/chat/completions", b"{not json", 400, None, "invalid_json"),
        ("/v1/chat/completions", {"model": "tiny-chat"}, 400, "messages", "missing"),
        ("/v1/completions", {"prompt": "Hi", "max_tokens": -1}, 400, "max_tokens", "greater_than_equal"),
        ("/v1/completions", {"prompt": "Hi", "model": "gpt-4"}, 404, "model", "model_not_found"),
        ("/v1/completions", {"prompt": "word " * 400}, 400, "prompt", "context_length_exceeded"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "word " * 400}], "stream": True},
            400,
            "messages",
            "context_length_exceeded",
        ),
        ("/v1/classify", {"input": "Hi"}, 400, None, "unsupported_model"),
        ("/v1/embeddings", {"input": "Hi"}, 400, "model", "unsupported_model"),
        ("/v1/nothing", {}, 404, None, "not_found"),
    ],
)
def test_bad_request_gets_openai_error_and_server_keeps_serving(chat_server, path, body, status, param, code):
    url, _ = chat_server
    sent = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, bytes) else {"json": body}
    response = _post(url, path, **sent)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert (error["param"], error["code"]) == (param, code)
    good = _post(url, "/v1/completions", json={"prompt": PROMPT, "max_tokens": 2})
    assert good.status_code == 200 and good.json()["choices"][0]["finish_reason"] in ("stop", "length")


def test_a_client_leaving_mid_stream_does_not_stop_others(chat_server):
    import httpx

    url, _ = chat_server
    with httpx.stream(
        "POST", url + "/v1/completions", json={"prompt": PROMPT, "max_tokens": 64, "stream": True}, timeout=30
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        next(r.iter_lines())  # one event, then hang up
    with httpx.stream("POST", url + "/v1/completions", json={"prompt": PROMPT, "max_tokens": 4, "stream": True}, timeout=30) as r:
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and json.loads(events[-2][6:])["object"] == "text_completion"
    assert _get(url, "/health").json()["status"] == "ok"


def test_api_key_is_enforced_and_the_server_stops_cleanly(chat_server):
    import openai

    from llmft.serving.app import build_app
    from llmft.serving.server import BackgroundServer

    _, served = chat_server
    app = build_app(served, api_key="sekret", max_batch_size=2)
    server = BackgroundServer(app)
    with server as url:
        assert _get(url, "/health").status_code == 401
        assert _get(url, "/health", headers={"Authorization": "Bearer wrong"}).json()["error"]["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            _client(url, "wrong").models.list()
        assert _client(url, "sekret").completions.create(model="tiny-chat", prompt=PROMPT, max_tokens=2).choices
        assert "llmft_requests_total" in _get(url, "/metrics", headers={"Authorization": "Bearer sekret"}).text
    assert not server.thread.is_alive() and not app.state.batcher._thread.is_alive()
    with pytest.raises(Exception):
        _get(url, "/health")  # nothing listens any more


def test_classifier_serves_labels_equal_to_generate(tmp_path):
    from fastapi.testclient import TestClient

    from llmft.serving.app import build_app

    cli(["train", *FAST], cwd=tmp_path)
    run = only_run_dir(tmp_path / "outputs")
    out = tmp_path / "p.jsonl"
    cli(
        ["generate", f"run={run}", f"input={write_jsonl(tmp_path / 'in.jsonl', [{'text': 'A lovely film.'}])}", f"output={out}"],
        cwd=tmp_path,
    )
    expected = json.loads(out.read_text())
    with TestClient(build_app(_served(run))) as client:
        response = client.post("/v1/classify", json={"input": ["A lovely film.", "Dull."]})
        assert response.status_code == 200, response.text
        first = response.json()["data"][0]
        assert first["label"] == expected["label"] and first["score"] == pytest.approx(expected["score"], abs=1e-5)
        assert set(first["scores"]) == {"negative", "positive"}
        assert client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}]}).status_code == 400
        assert client.post("/v1/classify", json={"input": "word " * 400}).json()["error"]["code"] == "context_length_exceeded"


def test_serve_cli_refuses_bad_input_with_one_line(tmp_path, chat_run):
    for args, words in (
        [[], "exactly one of run"],
        [[f"run={tmp_path / 'missing'}"], "run folder not found"],
        [[f"run={chat_run}", "backend=onnx"], "no ONNX export in"],  # a decoder is served from its export
    ):
        proc = cli(["serve", *args], cwd=tmp_path, check=False)
        assert proc.returncode == 2 and words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = cli(["serve", f"run={chat_run}", f"port={taken.getsockname()[1]}"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "cannot listen on 127.0.0.1" in proc.stderr, proc.stderr


@pytest.mark.slow  # seconds-long; the default suite stays under 10 minutes on 2 cores
def test_seq2seq_run_serves_completions_equal_to_generate(tmp_path):
    from fastapi.testclient import TestClient

    from llmft.serving.app import build_app

    cli(
        [
            "train",
            "task=translation",
            "model=tiny-t5",
            "trainer.max_steps=2",
            "trainer.batch_size=8",
            "task.data.max_train_samples=16",
            "task.data.max_eval_samples=8",
            "task.eval_generate_samples=2",
            "trainer.progress=false",
            "task.generation.max_new_tokens=8",
            "task.generation.repetition_penalty=2.0",
        ],
        cwd=tmp_path,
    )
    run = only_run_dir(tmp_path / "outputs")
    expected = _generate(run, tmp_path, "The dog ran.")
    assert expected  # a non-empty answer, so the comparison means something
    with TestClient(build_app(_served(run))) as client:
        response = client.post("/v1/completions", json={"prompt": "The dog ran.", "max_tokens": 8})
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["text"] == expected
        body = {"prompt": "The dog ran.", "max_tokens": 8, "stream": True}
        with client.stream("POST", "/v1/completions", json=body) as streamed:  # fed from the decoder's tokens
            lines = [line for line in streamed.iter_lines() if line.startswith("data: {")]
        assert "".join(json.loads(line[6:])["choices"][0]["text"] for line in lines) == expected
        chat = client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "The dog ran."}], "max_tokens": 8}
        )
        assert chat.json()["choices"][0]["message"]["content"] == expected  # no chat template: one user message as a prompt


@pytest.mark.slow  # seconds-long; the default suite stays under 10 minutes on 2 cores
def test_llmft_serve_process_answers_and_stops_on_ctrl_c(chat_run, tmp_path):
    """The real verb in its own process: it binds the port it was given, answers, and exits 0 on SIGINT."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmft", "serve", f"run={chat_run}", f"port={port}", "api_key=k"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health", headers={"Authorization": "Bearer k"}).status_code == 200:
                    break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
                time.sleep(0.2)
        model = _client(url, "k").models.list().data[0].id
        assert model == chat_run.name  # no run_name: the run folder's name
        assert _client(url, "k").completions.create(model=model, prompt=PROMPT, max_tokens=2).choices
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-3000:]
    assert f"serving {chat_run.name}" in err
