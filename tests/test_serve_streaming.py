"""Streaming under load (issue 25 item 2): concurrent streamed requests join one batch with each other and with plain
ones (the server's /metrics counts the streamed requests of every batch), each stream fed token by token from the
batched decode and ending equal to the plain greedy answer, with the same usage; a stream whose answer ends (a stop
string) closes while its batch goes on; a client that leaves stops only its own row. Driven by the real `openai`
client (httpx for the hang-up) against a tiny-gpt2 chat run."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from test_serve import _client, _get, chat_run  # noqa: F401  (fixture)

pytest.importorskip("fastapi")
pytest.importorskip("openai")

PROMPTS = ["What is 2 + 3?", "Name a colour.", "Tell me a story about a cat and a dog, please.", "Hi"]
GREEDY = {"model": "tiny-chat", "temperature": 0}


@pytest.fixture(scope="module")
def stream_server(chat_run):  # noqa: F811
    from llmft.serving.app import build_app
    from llmft.serving.server import BackgroundServer
    from test_serve import _served

    with BackgroundServer(build_app(_served(chat_run), max_batch_size=8, batch_window_ms=300)) as url:
        yield url  # a wide window: requests sent together land in one batch


def _batches_with_streams(url: str) -> float:
    """How many batches so far held more than one streamed request (llmft_batch_streamed_requests in /metrics)."""
    text = _get(url, "/metrics").text
    count = float(re.search(r"^llmft_batch_streamed_requests_count (\S+)$", text, re.M).group(1))
    at_most_one = float(re.search(r'^llmft_batch_streamed_requests_bucket\{le="1\.0"\} (\S+)$', text, re.M).group(1))
    return count - at_most_one


async def _streamed(create, chat: bool = False, **args) -> tuple[str, list]:
    """(the concatenated text, the chunks) of one streamed request."""
    chunks = [c async for c in await create(stream=True, **args)]
    text = "".join((c.choices[0].delta.content or "") if chat else c.choices[0].text for c in chunks if c.choices)
    return text, chunks


def test_concurrent_streams_share_a_batch_and_end_equal_to_plain_answers(stream_server):
    import openai

    url = stream_server

    async def fire(chat: bool) -> list:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        create = client.chat.completions.create if chat else client.completions.create
        asks = [{"messages": [{"role": "user", "content": p}]} if chat else {"prompt": p} for p in PROMPTS]
        usage = {"stream_options": {"include_usage": True}}
        streams = [_streamed(create, chat, **GREEDY, max_tokens=12, **usage, **ask) for ask in asks]
        plain = [create(**GREEDY, max_tokens=12, **ask) for ask in asks]  # the same settings: the same batch
        answers = await asyncio.gather(*streams, *plain)
        await client.close()
        return answers

    for chat in (False, True):
        before = _batches_with_streams(url)
        answers = asyncio.run(fire(chat))
        assert _batches_with_streams(url) > before  # the streams were decoded together, not one after another
        for (text, chunks), plain in zip(answers[: len(PROMPTS)], answers[len(PROMPTS) :]):
            choice = plain.choices[0]
            assert text == (choice.message.content if chat else choice.text)
            assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == choice.finish_reason
            assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == plain.usage.model_dump()


def test_a_stream_ends_at_its_stop_while_its_batch_goes_on(stream_server):
    import openai

    url = stream_server
    client = _client(url)
    short, long = PROMPTS[3], PROMPTS[2]
    texts = {p: client.completions.create(**GREEDY, prompt=p, max_tokens=40).choices[0].text for p in (short, long)}
    stop = next(word for word in texts[short].split()[1:] if word not in texts[long])  # ends `short` early, not `long`
    order: list[str] = []

    async def stream(client, prompt: str) -> str:
        text, _ = await _streamed(client.completions.create, **GREEDY, prompt=prompt, max_tokens=40, stop=[stop])
        order.append(prompt)
        return text

    async def fire() -> list[str]:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        answers = await asyncio.gather(stream(client, long), stream(client, short))  # the long one is sent first
        await client.close()
        return answers

    before = _batches_with_streams(url)
    assert asyncio.run(fire()) == [texts[long], texts[short].split(stop)[0].strip()]
    assert _batches_with_streams(url) > before and order == [short, long]  # one batch; the short stream closed first


def test_a_client_leaving_mid_stream_leaves_its_batch_going(stream_server):
    import httpx

    url = stream_server
    plain = _client(url).completions.create(**GREEDY, prompt=PROMPTS, max_tokens=40)  # one batch of the four prompts
    expected = {PROMPTS[c.index]: c.text for c in plain.choices}

    async def stream(http: httpx.AsyncClient, prompt: str, leave: bool) -> str:
        body = {**GREEDY, "prompt": prompt, "max_tokens": 40, "stream": True}
        async with http.stream("POST", f"{url}/v1/completions", json=body) as r:
            text = ""
            async for line in r.aiter_lines():
                if leave:
                    return "left"  # one event, then hang up
                if line.startswith("data: {"):
                    text += json.loads(line[6:])["choices"][0]["text"]
            return text

    async def fire() -> list[str]:
        async with httpx.AsyncClient(timeout=60) as http:
            return await asyncio.gather(*(stream(http, p, leave=i == 0) for i, p in enumerate(PROMPTS)))

    before = _batches_with_streams(url)
    assert asyncio.run(fire()) == ["left", *(expected[p] for p in PROMPTS[1:])]
    assert _batches_with_streams(url) > before
    assert _client(url).completions.create(**GREEDY, prompt=PROMPTS[0], max_tokens=4).choices[0].text is not None
