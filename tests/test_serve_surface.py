"""The request surface of `/v1/chat/completions` and `/v1/completions`, driven by the real `openai` client (httpx for
errors) against a tiny-gpt2 chat run: n choices (seeded, greedy), logprobs equal to the model's own log-softmax,
stop lists, max_completion_tokens, usage (plain and as the last stream chunk), the model's generation_config as
defaults, and a 400 naming each field that is not served."""

from __future__ import annotations

import dataclasses
import json

import pytest

from test_serve import PROMPT, _client, _post, _served, chat_run, chat_server  # noqa: F401  (fixtures)

pytest.importorskip("fastapi")
pytest.importorskip("openai")

CHAT = [{"role": "user", "content": PROMPT}]


def _prompt_ids(served, messages=None, prompt=None) -> list[int]:
    """The prompt tokens the server feeds the model (its own prompt building, then the tokenizer)."""
    from llmft.serving.served_model import GenerationWork

    text = served.prompt_text(GenerationWork(served.generation, prompt=prompt, messages=messages))
    return served.tokenizer(text, add_special_tokens=not served.task.prompt_has_special_tokens)["input_ids"]


def _log_softmax(served, ids: list[int]):
    """The model's log-softmax over the next token after each prefix of `ids` (one direct forward)."""
    import torch

    with torch.no_grad():
        return served.model(torch.tensor([ids])).logits[0].float().log_softmax(-1)


def test_n_choices_are_seeded_and_greedy_ones_equal(chat_server):
    url, _ = chat_server
    client = _client(url)
    sampled = [
        client.chat.completions.create(model="tiny-chat", messages=CHAT, n=3, temperature=1.0, seed=7, max_tokens=8)
        for _ in range(2)
    ]
    texts = [[c.message.content for c in r.choices] for r in sampled]
    assert texts[0] == texts[1] and len(texts[0]) == 3 and len(set(texts[0])) > 1, texts
    assert [c.index for c in sampled[0].choices] == [0, 1, 2]
    other = client.chat.completions.create(model="tiny-chat", messages=CHAT, n=3, temperature=1.0, seed=8, max_tokens=8)
    assert [c.message.content for c in other.choices] != texts[0]
    greedy = client.chat.completions.create(model="tiny-chat", messages=CHAT, n=3, temperature=0, max_tokens=8)
    alone = client.chat.completions.create(model="tiny-chat", messages=CHAT, temperature=0, max_tokens=8)
    assert [c.message.content for c in greedy.choices] == [alone.choices[0].message.content] * 3
    assert greedy.usage.completion_tokens == 3 * alone.usage.completion_tokens
    listed = client.completions.create(model="tiny-chat", prompt=[PROMPT, "Hello"], n=2, temperature=1.0, seed=3, max_tokens=4)
    again = client.completions.create(model="tiny-chat", prompt=[PROMPT, "Hello"], n=2, temperature=1.0, seed=3, max_tokens=4)
    assert [c.index for c in listed.choices] == [0, 1, 2, 3]
    assert [c.text for c in listed.choices] == [c.text for c in again.choices]


def test_chat_logprobs_equal_the_models_log_softmax(chat_server):
    url, served = chat_server
    answer = _client(url).chat.completions.create(
        model="tiny-chat",
        messages=CHAT,
        max_tokens=6,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
        extra_body={"repetition_penalty": 1.0},
    )
    content = answer.choices[0].logprobs.content
    assert len(content) == answer.usage.completion_tokens > 0
    ids = _prompt_ids(served, messages=CHAT)
    for step in content:  # greedy without a penalty: each chosen token is the model's argmax
        logprobs = _log_softmax(served, ids)[-1]
        best = logprobs.topk(3)
        chosen = int(best.indices[0])
        assert step.token == served.tokenizer.decode([chosen]) and step.logprob == pytest.approx(float(best.values[0]), abs=1e-4)
        assert [t.logprob for t in step.top_logprobs] == pytest.approx(best.values.tolist(), abs=1e-4)
        assert [t.token for t in step.top_logprobs] == [served.tokenizer.decode([int(i)]) for i in best.indices]
        assert step.bytes == list(step.token.encode("utf-8"))
        ids.append(chosen)


def test_completion_logprobs_are_the_raw_models_even_when_sampling(chat_server):
    """Sampled at temperature 0.5 with the run's repetition penalty 2.0: the reported logprobs are still the model's own
    log-softmax at each chosen token (not the warped distribution it sampled from)."""
    url, served = chat_server
    answer = _client(url).completions.create(model="tiny-chat", prompt=PROMPT, max_tokens=6, temperature=0.5, seed=1, logprobs=2)
    legacy = answer.choices[0].logprobs
    assert len(legacy.tokens) == len(legacy.token_logprobs) == len(legacy.top_logprobs) == answer.usage.completion_tokens
    assert legacy.text_offset == [sum(len(t) for t in legacy.tokens[:i]) for i in range(len(legacy.tokens))]
    vocab = [served.tokenizer.decode([i]) for i in range(len(served.tokenizer))]
    ids = _prompt_ids(served, prompt=PROMPT)
    for token, logprob, top in zip(legacy.tokens, legacy.token_logprobs, legacy.top_logprobs):
        logprobs = _log_softmax(served, ids)[-1]
        matches = [i for i, text in enumerate(vocab) if text == token and abs(float(logprobs[i]) - logprob) < 1e-4]
        assert matches, (token, logprob)
        best = logprobs.topk(2)
        assert [top[served.tokenizer.decode([int(i)])] for i in best.indices] == pytest.approx(best.values.tolist(), abs=1e-4)
        ids.append(matches[0])


def test_stop_list_and_max_completion_tokens(chat_server):
    url, _ = chat_server
    client = _client(url)
    full = client.completions.create(model="tiny-chat", prompt=PROMPT, max_tokens=8, temperature=0)
    text = full.choices[0].text
    assert len(text) > 2 and full.usage.completion_tokens > 3
    stop = text[len(text) // 2]
    cut = client.completions.create(model="tiny-chat", prompt=PROMPT, max_tokens=8, temperature=0, stop=["@@@", stop])
    assert cut.choices[0].text == text[: text.index(stop)].strip() and cut.choices[0].finish_reason == "stop"
    assert cut.usage.completion_tokens < full.usage.completion_tokens
    both = client.chat.completions.create(model="tiny-chat", messages=CHAT, max_tokens=8, max_completion_tokens=3, temperature=0)
    newer = client.chat.completions.create(model="tiny-chat", messages=CHAT, max_completion_tokens=3, temperature=0)
    assert both.usage.completion_tokens == newer.usage.completion_tokens == 3 and both.choices[0].finish_reason == "length"
    assert both.choices[0].message.content == newer.choices[0].message.content


def test_usage_counts_tokens_plain_and_as_the_last_stream_chunk(chat_server):
    url, served = chat_server
    client = _client(url)
    plain = client.chat.completions.create(model="tiny-chat", messages=CHAT, max_tokens=8, temperature=0, logprobs=True)
    assert plain.usage.prompt_tokens == len(_prompt_ids(served, messages=CHAT))
    assert plain.usage.completion_tokens == len(plain.choices[0].logprobs.content)
    assert plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens
    for create, args in ((client.chat.completions.create, {"messages": CHAT}), (client.completions.create, {"prompt": PROMPT})):
        chunks = list(
            create(model="tiny-chat", max_tokens=8, temperature=0, stream=True, stream_options={"include_usage": True}, **args)
        )
        assert chunks[-1].choices == [] and all(c.usage is None for c in chunks[:-1])
        alone = create(model="tiny-chat", max_tokens=8, temperature=0, **args)
        assert chunks[-1].usage.model_dump() == alone.usage.model_dump()
        plain_stream = list(create(model="tiny-chat", max_tokens=8, temperature=0, stream=True, **args))
        assert all(c.choices for c in plain_stream)  # no usage chunk unless asked


def test_model_generation_config_gives_the_defaults(chat_run, chat_server):
    from fastapi.testclient import TestClient

    from llmft.serving.app import build_app
    from llmft.serving.served_model import model_sampling_defaults

    _, served = chat_server
    config = served.model.generation_config
    kept = config.max_new_tokens, config.temperature
    config.max_new_tokens, config.temperature = 3, 0.7
    try:
        defaults = model_sampling_defaults(served.generation, served.model)
    finally:
        config.max_new_tokens, config.temperature = kept
    assert (defaults.max_new_tokens, defaults.do_sample, defaults.temperature) == (3, True, 0.7)
    assert model_sampling_defaults(served.generation, served.model) == served.generation  # nothing stated: the run's own
    other = dataclasses.replace(served, generation=defaults)
    with TestClient(build_app(other)) as client:
        body = client.post("/v1/completions", json={"prompt": PROMPT, "seed": 5}).json()
        assert body["usage"]["completion_tokens"] == 3 and body["choices"][0]["finish_reason"] == "length"
        again = client.post("/v1/completions", json={"prompt": PROMPT, "seed": 5}).json()
        greedy = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 2, "temperature": 0}).json()
        assert again["choices"][0]["text"] == body["choices"][0]["text"] and greedy["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize(
    "path, extra, param",
    [
        ("/v1/chat/completions", {"response_format": {"type": "xml"}}, "response_format"),
        ("/v1/completions", {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format"),
        ("/v1/chat/completions", {"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ("/v1/chat/completions", {"tool_choice": "auto"}, "tool_choice"),
        ("/v1/chat/completions", {"functions": [{"name": "f"}]}, "functions"),
        ("/v1/chat/completions", {"logit_bias": {"5": 10}}, "logit_bias"),
        ("/v1/chat/completions", {"presence_penalty": 0.5}, "presence_penalty"),
        ("/v1/completions", {"best_of": 3}, "best_of"),
        ("/v1/completions", {"echo": True}, "echo"),
        ("/v1/completions", {"suffix": "end"}, "suffix"),
        ("/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs"),
        ("/v1/chat/completions", {"stream_options": {"include_usage": True}}, "stream_options"),
        ("/v1/chat/completions", {"stream": True, "n": 2}, "n"),
        ("/v1/completions", {"stream": True, "logprobs": 1}, "logprobs"),
    ],
)
def test_unserved_fields_get_a_400_naming_them(chat_server, path, extra, param):
    url, _ = chat_server
    body = {"messages": CHAT} if path.endswith("chat/completions") else {"prompt": PROMPT}
    response = _post(url, path, json={**body, "max_tokens": 2, **extra})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param and param in response.json()["error"]["message"]
    harmless = {"response_format": {"type": "text"}, "tools": [], "presence_penalty": 0, "best_of": 1, "echo": False}
    ok = _post(url, "/v1/completions", json={"prompt": PROMPT, "max_tokens": 2, **harmless})
    assert ok.status_code == 200, ok.text


def test_openai_client_sees_the_refusal(chat_server):
    import openai

    url, _ = chat_server
    with pytest.raises(openai.BadRequestError) as refused:
        _client(url).chat.completions.create(
            model="tiny-chat", messages=CHAT, response_format={"type": "json_schema", "json_schema": {"name": "x"}}
        )
    assert json.loads(refused.value.response.text)["error"]["param"] == "response_format"


def test_beam_search_serves_answers_but_refuses_logprobs(chat_server):
    from fastapi.testclient import TestClient

    from llmft.serving.app import build_app

    _, served = chat_server
    beams = dataclasses.replace(served, generation=dataclasses.replace(served.generation, num_beams=2))
    with TestClient(build_app(beams)) as client:
        answer = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 4, "n": 2})
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] > 0, answer.text
        plain = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 4}).json()["choices"][0]["text"]
        with client.stream("POST", "/v1/completions", json={"prompt": PROMPT, "max_tokens": 4, "stream": True}) as streamed:
            lines = [line for line in streamed.iter_lines() if line.startswith("data: {")]  # beams: one chunk at the end
        assert "".join(json.loads(line[6:])["choices"][0]["text"] for line in lines) == plain
        refused = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 4, "logprobs": 1})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "logprobs"
        grammar = client.post(
            "/v1/completions", json={"prompt": PROMPT, "max_tokens": 4, "response_format": {"type": "json_object"}}
        )
        assert grammar.status_code == 400 and grammar.json()["error"]["param"] == "response_format", grammar.text
