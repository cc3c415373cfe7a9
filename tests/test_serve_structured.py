"""Structured output and function calling through the real `openai` client (httpx for errors) against the tiny-gpt2
chat run of test_serve: `response_format` json_object / json_schema decoded under xgrammar's grammar (the text parses
and validates for every seed), `tools` rendered by a tools chat template, the model's `<tool_call>` blocks parsed into
`message.tool_calls`, `tool_choice` forcing a call, and 400s naming the field where a model or server cannot."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from test_serve import PROMPT, _client, _post, _served, chat_run, chat_server  # noqa: F401  (fixtures)

pytest.importorskip("fastapi")
pytest.importorskip("openai")
pytest.importorskip("xgrammar")
jsonschema = pytest.importorskip("jsonschema")

CHAT = [{"role": "user", "content": PROMPT}]
TOOLS_TEMPLATE = Path(__file__).parent / "fixtures" / "llm_data" / "chatml_tools.jinja"
PERSON = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "age", "member"],
    "properties": {
        "name": {"type": "string", "maxLength": 6},
        "age": {"type": "integer", "minimum": 0, "maximum": 99},
        "member": {"type": "boolean"},
    },
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"enum": ["Oslo", "Lima"]}}, "required": ["city"]},
    },
}  # short: tiny-gpt2 has 256 positions
CLOCK = {"type": "function", "function": {"name": "time", "parameters": {"type": "object", "properties": {}}}}
DATE = {"type": "function", "function": {"name": "date", "parameters": {"type": "object", "properties": {}}}}


def test_json_schema_answers_parse_and_validate_for_every_seed(chat_server):
    url, _ = chat_server
    client = _client(url)
    schema_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    answers = [
        client.chat.completions.create(
            model="tiny-chat", messages=CHAT, response_format=schema_format, max_tokens=80, temperature=1.0, seed=seed
        )
        for seed in range(4)
    ]
    answers.append(
        client.chat.completions.create(
            model="tiny-chat", messages=CHAT, response_format=schema_format, max_tokens=80, temperature=0, n=2
        )
    )
    for answer in answers:
        for choice in answer.choices:
            jsonschema.validate(json.loads(choice.message.content), PERSON)
            assert choice.finish_reason == "stop"
    assert len({a.choices[0].message.content for a in answers[:4]}) > 1  # sampled, not one fixed string
    completion = client.completions.create(
        model="tiny-chat", prompt=PROMPT, max_tokens=80, seed=1, temperature=1.0, extra_body={"response_format": schema_format}
    )
    jsonschema.validate(json.loads(completion.choices[0].text), PERSON)


def test_json_object_answers_are_json_objects_streamed_too(chat_server):
    """json_object bounds nothing (a random model may write one key for ever): every answer that ends is an object."""
    url, _ = chat_server
    client = _client(url)
    ended = []
    for seed in range(6):
        answer = client.chat.completions.create(
            model="tiny-chat", messages=CHAT, response_format={"type": "json_object"}, max_tokens=60, temperature=1.0, seed=seed
        )
        if answer.choices[0].finish_reason == "stop":
            ended.append(json.loads(answer.choices[0].message.content))
    assert ended and all(isinstance(value, dict) for value in ended)
    chunks = list(
        client.chat.completions.create(
            model="tiny-chat",
            messages=CHAT,
            max_tokens=80,
            stream=True,
            response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}},
        )
    )
    jsonschema.validate(json.loads("".join(c.choices[0].delta.content or "" for c in chunks if c.choices)), PERSON)


def test_without_xgrammar_a_400_names_the_install_command(chat_server, monkeypatch):
    from llmft.serving import structured

    url, _ = chat_server
    monkeypatch.setattr(structured, "available", lambda: False)
    response = _post(url, "/v1/chat/completions", json={"messages": CHAT, "response_format": {"type": "json_object"}})
    assert response.status_code == 400 and response.json()["error"]["param"] == "response_format", response.text
    assert 'pip install "llmft[structured]"' in response.json()["error"]["message"]


@pytest.fixture(scope="module")
def tools_server(chat_run):
    """The chat run served with the tools template a run trained with task.chat_template=chatml_tools.jinja saves."""
    from llmft.serving.app import build_app
    from llmft.serving.server import BackgroundServer

    served = _served(chat_run)
    tokenizer = copy.deepcopy(served.tokenizer)
    tokenizer.chat_template = TOOLS_TEMPLATE.read_text()
    served = dataclasses.replace(served, tokenizer=tokenizer, max_length=256)  # the tool list makes prompts long
    with BackgroundServer(build_app(served, batch_window_ms=5)) as url:
        yield url, served


def test_tools_reach_the_template_and_a_forced_call_is_parsed(tools_server):
    from llmft.serving.served_model import GenerationWork

    url, served = tools_server
    client = _client(url)
    rendered = served.prompt_text(GenerationWork(served.generation, messages=CHAT, tools=[WEATHER]))
    assert rendered.startswith("<|im_start|>system\nTools: ") and "weather" in rendered
    for seed in range(3):
        answer = client.chat.completions.create(
            model="tiny-chat",
            messages=CHAT,
            tools=[WEATHER],
            max_tokens=80,
            tool_choice={"type": "function", "function": {"name": "weather"}},
            temperature=1.0,
            seed=seed,
        )
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls" and len(choice.message.tool_calls) == 1, choice
        call = choice.message.tool_calls[0]
        assert call.type == "function" and call.function.name == "weather" and call.id.startswith("call_")
        assert json.loads(call.function.arguments)["city"] in ("Oslo", "Lima")
    required = client.chat.completions.create(
        model="tiny-chat", messages=CHAT, tools=[CLOCK, DATE], tool_choice="required", max_tokens=60, seed=3, temperature=1.0
    )
    assert required.choices[0].message.tool_calls[0].function.name in ("time", "date")


def test_a_tool_turn_history_renders_and_calls_parse_from_text(tools_server):
    from llmft.serving.tools import parse_calls

    url, _ = tools_server
    history = [
        *CHAT,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    answer = _client(url).chat.completions.create(model="tiny-chat", messages=history, tools=[WEATHER], max_tokens=4)
    assert answer.choices[0].finish_reason in ("stop", "length", "tool_calls")
    text = 'Checking. <tool_call>{"name": "weather", "arguments": {"city": "Lima"}}</tool_call>'
    content, calls = parse_calls(text, [WEATHER])
    assert content == "Checking." and calls[0]["function"] == {"name": "weather", "arguments": '{"city": "Lima"}'}
    assert parse_calls('<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>', [WEATHER])[1] == []  # not a given tool


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tools": [{"type": "retrieval"}]}, "tools"),
        ({"tools": [WEATHER], "stream": True}, "tools"),
        ({"tools": [WEATHER], "parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"tools": [WEATHER], "tool_choice": "required", "response_format": {"type": "json_object"}}, "response_format"),
    ],
)
def test_bad_tool_requests_get_a_400_naming_the_field(tools_server, extra, param):
    url, _ = tools_server
    response = _post(url, "/v1/chat/completions", json={"messages": CHAT, "max_tokens": 2, **extra})
    assert response.status_code == 400 and response.json()["error"]["param"] == param, response.text


def test_a_model_whose_template_ignores_tools_refuses_them(chat_server):
    url, _ = chat_server
    response = _post(url, "/v1/chat/completions", json={"messages": CHAT, "tools": [WEATHER]})
    assert response.status_code == 400 and response.json()["error"]["param"] == "tools"
    assert "does not render tools" in response.json()["error"]["message"]
