"""The FastAPI app: OpenAI-compatible completions and chat (plain and streamed as server-sent events), models,
classification, health and Prometheus metrics. Handlers only validate and queue: the batcher's thread runs the model."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
from typing import Any, AsyncIterator, Hashable, Optional, Protocol

from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

from llmft.config import GenerationConfig
from llmft.data.chat_formats import normalize_turn
from llmft.errors import UserError
from llmft.inference.generation import cut_at_stop
from llmft.serving import schemas, structured, tools
from llmft.serving.batcher import Batcher
from llmft.serving.errors import ServeError, error_response, install_error_handlers
from llmft.serving.metrics import Metrics
from llmft.serving.served_model import GenerationWork, generation_for
from llmft.serving.streams import Stream
from llmft.tasks.base import Task


class Served(Protocol):
    """What the app asks of a served model: ServedModel (PyTorch) and OnnxModel (an ONNX export) answer it."""

    name: str  # the id clients name in `model`
    names: list[str]  # every id served (runs=[...]: one per adapter run)
    chat_template: Optional[str]  # the template chats are rendered with (None: none)
    task: Task  # the run's task: its pipeline_tag, its data columns
    generation: GenerationConfig  # the defaults a request's sampling fields override
    max_batch_size: int

    @property
    def generates(self) -> bool: ...

    @property
    def classifies(self) -> bool: ...

    @property
    def embeds(self) -> bool: ...

    def run_batch(self, key: Hashable, payloads: list[Any]) -> list[Any]: ...

    def check_single_text(self) -> None: ...

    def adapter_for(self, model: Optional[str]) -> Optional[str]: ...


ROUTES = ("/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/classify", "/v1/embeddings")


def build_app(served: Served, api_key: Optional[str] = None, max_batch_size: int = 8, batch_window_ms: float = 10.0) -> FastAPI:
    """The app serving `served`; its batcher thread starts and stops with the app's lifespan."""
    metrics = Metrics()
    served.max_batch_size = max_batch_size  # generate() runs a batch of this many in one call
    batcher = Batcher(served.run_batch, max_batch_size, batch_window_ms / 1000.0, lambda payloads: _observe(metrics, payloads))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        batcher.stop()

    # no /docs, /redoc or /openapi.json: the server answers the routes the README lists (ROUTES), nothing more
    app = FastAPI(title=f"llmft serve: {served.name}", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.served, app.state.batcher, app.state.metrics = served, batcher, metrics
    install_error_handlers(app)
    _install_middleware(app, metrics, api_key)
    _monitoring_routes(app, served, metrics)
    _generation_routes(app, served, batcher, metrics)
    _other_routes(app, served, batcher)
    return app


def _observe(metrics: Metrics, payloads: list[Any]) -> None:
    """A batch the model runs: its size and how many of its requests are streamed."""
    streamed = sum(isinstance(p, GenerationWork) and p.stream is not None for p in payloads)
    metrics.observe_batch(len(payloads), streamed)


def _install_middleware(app: FastAPI, metrics: Metrics, api_key: Optional[str]) -> None:
    """Every request: the API key (when one is set), then the request counted and timed; an unexpected failure
    becomes a 500 in OpenAI's shape and the server keeps serving."""

    @app.middleware("http")
    async def guard_and_measure(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        route = request.url.path if request.url.path in ROUTES else "other"
        if api_key is not None and not secrets.compare_digest(
            request.headers.get("authorization", "").encode(), f"Bearer {api_key}".encode()
        ):
            response: Response = error_response(
                401, "invalid or missing API key (send Authorization: Bearer <api_key>)", code="invalid_api_key"
            )
        else:
            try:
                response = await call_next(request)
            except Exception as ex:  # noqa: BLE001 - one request fails, not the server
                response = error_response(500, f"internal error: {type(ex).__name__}: {ex}", type="server_error")
        metrics.observe_request(route, response.status_code, time.perf_counter() - start)
        return response


def _monitoring_routes(app: FastAPI, served: Served, metrics: Metrics) -> None:
    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": served.name, "task": served.task.pipeline_tag}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(served, name) for name in served.names]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        _check_model(served, model_id)
        return _model_card(served, model_id)


def _model_card(served: Served, name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "llmft", "task": served.task.pipeline_tag}


def _check_model(served: Served, name: Optional[str]) -> str:
    """The model id a request names (the first served one when it names none); 404 for an id not served."""
    if name is not None and name not in served.names:
        raise ServeError(
            404,
            f"the model '{name}' does not exist; this server serves {', '.join(repr(n) for n in served.names)}",
            param="model",
            code="model_not_found",
        )
    return name or served.name


def _needs(served: Served, able: bool, what: str, route: str, param: Optional[str] = None) -> None:
    if not able:
        raise ServeError(
            400,
            f"{route} needs a {what} model; {served.name} is {served.task.pipeline_tag}",
            param=param,
            code="unsupported_model",
        )


def _check_request(body: Any, generation: GenerationConfig) -> None:
    """A field this server does not do, or a combination it does not stream, is a 400 naming the field."""
    field = body.unsupported()
    if field is not None:
        raise ServeError(
            400,
            f"{field} is not supported by llmft serve (see the README's table of served fields)",
            param=field,
            code="unsupported_field",
        )
    if getattr(body, "top_logprobs", None) is not None and not getattr(body, "logprobs", None):
        raise ServeError(400, "top_logprobs needs logprobs=true", param="top_logprobs", code="invalid_value")
    if body.stream_options is not None and not body.stream:
        raise ServeError(400, "stream_options is only allowed with stream=true", param="stream_options", code="invalid_value")
    if body.stream and body.n > 1:
        raise ServeError(400, "n > 1 is not streamed by llmft serve; send stream=false", param="n", code="unsupported_field")
    if body.wanted_logprobs() is not None and generation.num_beams > 1:
        raise ServeError(
            400,
            f"logprobs are not reported with beam search (generation.num_beams={generation.num_beams})",
            param="logprobs",
            code="unsupported_field",
        )
    if body.stream and body.wanted_logprobs() is not None:
        raise ServeError(
            400, "logprobs are not streamed by llmft serve; send stream=false", param="logprobs", code="unsupported_field"
        )


def _generation_routes(app: FastAPI, served: Served, batcher: Batcher, metrics: Metrics) -> None:
    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: schemas.ChatCompletionRequest) -> Any:
        model_id = _check_model(served, body.model)
        _needs(served, served.generates, "text-generating", "/v1/chat/completions")
        _check_request(body, served.generation)
        work = _chat_work(served, body)
        if body.stream:
            return await _stream(model_id, batcher, metrics, work, chat=True, with_usage=_with_usage(body))
        answer = await asyncio.wrap_future(batcher.submit(work.batch_key(), work))
        metrics.tokens.inc(answer["completion_tokens"])
        return schemas.chat_completion(model_id, answer)

    @app.post("/v1/completions", response_model=None)
    async def completions(body: schemas.CompletionRequest) -> Any:
        model_id = _check_model(served, body.model)
        _needs(served, served.generates, "text-generating", "/v1/completions")
        _check_request(body, served.generation)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if not prompts or (body.stream and len(prompts) != 1):
            raise ServeError(
                400,
                "prompt must be a string or a non-empty list of strings (one string when stream=true)",
                param="prompt",
                code="invalid_prompt",
            )
        generation = generation_for(served.generation, body)
        constraint = _constraint(body, None, generation.num_beams)
        works = [
            GenerationWork(
                generation,
                prompt=p,
                seed=body.seed,
                n=body.n,
                top_logprobs=body.wanted_logprobs(),
                constraint=constraint,
                adapter=served.adapter_for(body.model),
            )
            for p in prompts
        ]
        if body.stream:
            return await _stream(model_id, batcher, metrics, works[0], chat=False, with_usage=_with_usage(body))
        answers = await asyncio.gather(*(asyncio.wrap_future(batcher.submit(w.batch_key(), w)) for w in works))
        metrics.tokens.inc(sum(a["completion_tokens"] for a in answers))
        return schemas.text_completion(model_id, list(answers))


def _chat_work(served: Served, body: schemas.ChatCompletionRequest) -> GenerationWork:
    """A chat request as work: its turns normalized as training reads them, its tools checked against the model's
    chat template, its response_format or forced tool call as a grammar constraint."""
    given = tools.checked_tools(body.tools, body.tool_choice, served.chat_template, served.name)
    if given and body.stream and body.tool_choice != "none":
        raise ServeError(
            400, "tool calls are not streamed by llmft serve; send stream=false", param="tools", code="unsupported_field"
        )
    try:
        messages = [normalize_turn(m.model_dump(exclude_none=True), i, lambda: "messages") for i, m in enumerate(body.messages)]
    except UserError as ex:
        raise ServeError(400, str(ex), param="messages", code="invalid_value") from None
    constraint = _constraint(body, given, served.generation.num_beams)
    return GenerationWork(
        generation_for(served.generation, body),
        messages=messages,
        seed=body.seed,
        n=body.n,
        top_logprobs=body.wanted_logprobs(),
        param="messages",
        tools=given,
        parse_tools=bool(given) and body.tool_choice != "none",
        constraint=constraint,
        adapter=served.adapter_for(body.model),
    )


def _constraint(body: Any, given: Optional[list[dict[str, Any]]], beams: int) -> Optional[tuple[str, str]]:
    """The grammar a request decodes under: its response_format's JSON schema, or the call a tool_choice forces."""
    schema = structured.schema_of(body.response_format) if body.response_format is not None else None
    call = tools.call_schema(given, body.tool_choice) if given else None
    if schema is not None and call is not None:
        raise ServeError(
            400,
            "response_format and a forcing tool_choice cannot both constrain one answer",
            param="response_format",
            code="invalid_value",
        )
    if schema is None and call is None:
        return None
    structured.require("response_format" if schema is not None else "tool_choice")
    if beams > 1:  # beams reorder rows every step; a matcher follows one row
        raise ServeError(
            400,
            f"constrained decoding does not run with beam search (generation.num_beams={beams})",
            param="response_format" if schema is not None else "tool_choice",
            code="unsupported_field",
        )
    return ("json", json.dumps(schema)) if schema is not None else ("tool_call", json.dumps(call))  # property order kept


def _with_usage(body: Any) -> bool:
    return body.stream_options is not None and body.stream_options.include_usage


def _other_routes(app: FastAPI, served: Served, batcher: Batcher) -> None:
    @app.post("/v1/classify")
    async def classify(body: schemas.ClassifyRequest) -> dict[str, Any]:
        _check_model(served, body.model)
        _needs(served, served.classifies, "classifying", "/v1/classify")
        served.check_single_text()
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts:
            raise ServeError(400, "input must be a string or a non-empty list of strings", param="input", code="invalid_input")
        results = await asyncio.gather(*(asyncio.wrap_future(batcher.submit("classify", t)) for t in texts))
        data = [
            {"index": i, "label": r["label"], "score": r["score"], "scores": r.get("probabilities", {r["label"]: r["score"]})}
            for i, r in enumerate(results)
        ]  # a one-output head (a reward model, regression): its value
        return {"object": "list", "model": served.name, "data": data}

    @app.post("/v1/embeddings")
    async def embeddings(body: schemas.EmbeddingRequest) -> dict[str, Any]:
        _check_model(served, body.model)
        _needs(served, served.embeds, "sentence-embedding (task=embedding)", "/v1/embeddings", param="model")
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts:
            raise ServeError(400, "input must be a string or a non-empty list of strings", param="input", code="invalid_input")
        results = await asyncio.gather(*(asyncio.wrap_future(batcher.submit("embed", t)) for t in texts))
        size = len(results[0]["embedding"])
        if body.dimensions is not None and body.dimensions != size:
            raise ServeError(
                400,
                f"{served.name} embeds in {size} dimensions; dimensions={body.dimensions} is not served",
                param="dimensions",
                code="invalid_dimensions",
            )
        return schemas.embedding_list(served.name, list(results), body.encoding_format)


async def _stream(
    model_id: str, batcher: Batcher, metrics: Metrics, work: GenerationWork, chat: bool, with_usage: bool = False
) -> Any:
    """A streamed generation as server-sent events in OpenAI's chunk format, ending with `data: [DONE]`. It joins a
    batch like any request, its text handed over token by token; a refused prompt is still a plain 4xx (the first
    item is awaited before the response starts); a client that leaves stops its own row at the next token."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[Any] = asyncio.Queue()
    gone = threading.Event()

    def send(item: Any) -> None:
        loop.call_soon_threadsafe(pieces.put_nowait, item)

    work.stream = Stream(send, gone.is_set)
    future = batcher.submit(work.batch_key(), work)
    future.add_done_callback(lambda done: send(done.exception() or done.result()))  # the answer again, or a batch's error
    first = await pieces.get()
    if isinstance(first, BaseException):
        raise first  # a ServeError: the client gets its 4xx
    events = _events(model_id, metrics, work, pieces, first, gone, chat, with_usage)
    return StreamingResponse(events, media_type="text/event-stream")


async def _events(
    model_id: str,
    metrics: Metrics,
    work: GenerationWork,
    pieces: asyncio.Queue,
    first: Any,
    gone: threading.Event,
    chat: bool,
    with_usage: bool,
) -> AsyncIterator[str]:
    stream_id, sent, raw = schemas.new_id("chatcmpl" if chat else "cmpl"), "", ""

    def event(text: Optional[str], finish: Optional[str] = None, opening: bool = False) -> str:
        return f"data: {json.dumps(schemas.stream_chunk(chat, stream_id, model_id, text, finish, opening, with_usage))}\n\n"

    try:
        if chat:
            yield event("", opening=True)
        piece = first
        while isinstance(piece, str):
            raw += piece
            visible = shown_so_far(raw, work.generation.stop)
            if visible.startswith(sent) and len(visible) > len(sent):
                yield event(visible[len(sent) :])
                sent = visible
            piece = await pieces.get()
        if isinstance(piece, BaseException):
            raise piece  # the batch failed mid-stream: the response ends without [DONE]
        choice = piece["choices"][0]  # the text `generate` returns (stop strings cut, stripped): the stream ends equal to it
        if choice["text"].startswith(sent) and len(choice["text"]) > len(sent):
            yield event(choice["text"][len(sent) :])
        metrics.tokens.inc(piece["completion_tokens"])
        yield event(None, choice["finish_reason"])
        if with_usage:
            yield f"data: {json.dumps(schemas.usage_chunk(chat, stream_id, model_id, piece))}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        gone.set()  # the client left (or the stream ended): its row stops at the next token


def shown_so_far(raw: str, stops: list[str]) -> str:
    """The part of a growing generation that is final: before any stop string, without leading whitespace, holding back
    trailing whitespace and a tail that may begin a stop string (both may still be cut)."""
    text = cut_at_stop(raw, stops).lstrip()
    if len(cut_at_stop(raw, stops)) == len(raw):
        for stop in stops:
            for n in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:n]):
                    text = text[:-n]
                    break
    return text.rstrip()
