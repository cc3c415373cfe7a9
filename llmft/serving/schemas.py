"""Request bodies in OpenAI's shapes (pydantic checks them; a bad field is a 400 naming it) and the response and
stream-chunk dictionaries the openai client parses."""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, ClassVar, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use (user, logprobs=None, ...)


SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.manual_seed takes


class StreamOptions(_Request):
    include_usage: bool = False  # a last chunk with `usage` and no choices


UNSUPPORTED: dict[str, Callable[[Any, Any], bool]] = {  # field -> is this value a no-op (accepted)?
    "tools": lambda v, r: v == [],  # chat only (ChatCompletionRequest.SERVED)
    "tool_choice": lambda v, r: v == "none",
    "parallel_tool_calls": lambda v, r: v is True,  # a model may write several calls; one at most is not enforced
    "functions": lambda v, r: v == [],
    "function_call": lambda v, r: v == "none",
    "logit_bias": lambda v, r: v == {},
    "presence_penalty": lambda v, r: v == 0,
    "frequency_penalty": lambda v, r: v == 0,
    "best_of": lambda v, r: v == r.n,
    "echo": lambda v, r: v is False,
    "suffix": lambda v, r: v == "",
    "prediction": lambda v, r: False,
    "audio": lambda v, r: False,
    "modalities": lambda v, r: v == ["text"],
    "min_p": lambda v, r: v == 0,
}


class Sampling(_Request):
    """The per-request generation settings; unset ones take the run's task.generation. (The served model checks that
    max_tokens fits its positions after the prompt.)"""

    model: Optional[str] = None  # when given, must be the served model's id
    max_tokens: Optional[int] = Field(None, ge=1, le=2**31 - 1)  # the served model checks its own positions too
    max_completion_tokens: Optional[int] = Field(None, ge=1, le=2**31 - 1)  # the newer name of max_tokens
    temperature: Optional[float] = Field(None, ge=0, le=2)  # 0: greedy; > 0 samples
    top_p: Optional[float] = Field(None, gt=0, le=1)
    top_k: Optional[int] = Field(None, ge=-1)  # vLLM's extra field; -1 or 0: no limit
    repetition_penalty: Optional[float] = Field(None, gt=0)  # vLLM's extra field
    stop: Optional[Union[str, list[str]]] = None
    seed: Optional[int] = None
    n: int = Field(1, ge=1, le=128)  # choices per prompt
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    response_format: Optional[Any] = None  # text, json_object or json_schema: decoded under a grammar (structured.py)
    # accepted only at their no-op value (see UNSUPPORTED) unless the endpoint serves them (SERVED)
    tools: Optional[Any] = None
    tool_choice: Optional[Any] = None
    parallel_tool_calls: Optional[Any] = None
    functions: Optional[Any] = None
    function_call: Optional[Any] = None
    logit_bias: Optional[Any] = None
    presence_penalty: Optional[Any] = None
    frequency_penalty: Optional[Any] = None
    best_of: Optional[Any] = None
    echo: Optional[Any] = None
    suffix: Optional[Any] = None
    prediction: Optional[Any] = None
    audio: Optional[Any] = None
    modalities: Optional[Any] = None
    min_p: Optional[Any] = None

    SERVED: ClassVar[tuple[str, ...]] = ()  # fields of UNSUPPORTED this endpoint serves

    def unsupported(self) -> Optional[str]:
        """The first field set to something this server does not do (None when every field is served)."""
        for name, harmless in UNSUPPORTED.items():
            value = getattr(self, name)
            if name not in self.SERVED and value is not None and not harmless(value, self):
                return name
        return None

    @field_validator("seed")
    @classmethod
    def _seed_in_range(cls, seed: Optional[int]) -> Optional[int]:
        if seed is not None and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
            raise ValueError(f"must be an integer from {SEED_RANGE[0]} to {SEED_RANGE[1]}, got {seed}")
        return seed

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, stop: Optional[Union[str, list[str]]]) -> Optional[Union[str, list[str]]]:
        if stop is not None and "" in ([stop] if isinstance(stop, str) else stop):
            raise ValueError("an empty stop string would stop before the first character; give non-empty strings")
        return stop


class ChatMessage(_Request):
    """A turn: text (or OpenAI's list of text parts), an assistant's tool_calls, or a tool's result (tool_call_id)."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Optional[Union[str, list[Any]]] = None
    tool_calls: Optional[list[Any]] = None
    tool_call_id: Optional[str] = None
    name: Optional[str] = None


class ChatCompletionRequest(Sampling):
    SERVED: ClassVar[tuple[str, ...]] = ("tools", "tool_choice")
    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: Optional[bool] = None  # each chosen token's logprob in choice.logprobs.content
    top_logprobs: Optional[int] = Field(None, ge=0, le=20)  # and the k most likely tokens at each step (needs logprobs)

    def wanted_logprobs(self) -> Optional[int]:
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(Sampling):
    prompt: Union[str, list[str]]
    logprobs: Optional[int] = Field(None, ge=0, le=20)  # legacy: token_logprobs and the k most likely tokens

    def wanted_logprobs(self) -> Optional[int]:
        return self.logprobs


class ClassifyRequest(_Request):
    model: Optional[str] = None
    input: Union[str, list[str]]


class EmbeddingRequest(_Request):
    model: Optional[str] = None
    input: Union[str, list[str]]
    encoding_format: Literal["float", "base64"] = "float"  # the openai client asks for base64 unless told otherwise
    dimensions: Optional[int] = Field(None, ge=1)  # only the model's own size is served


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _usage_of(answers: list[dict[str, Any]]) -> dict[str, int]:
    return usage(sum(a["prompt_tokens"] for a in answers), sum(a["completion_tokens"] for a in answers))


def chat_logprobs(tokens: Optional[list[Any]]) -> Optional[dict[str, Any]]:
    """A chat choice's `logprobs`: per token {token, logprob, bytes, top_logprobs} (tokens: (text, logprob, top))."""
    if tokens is None:
        return None

    def entry(text: str, logprob: float) -> dict[str, Any]:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    return {
        "content": [{**entry(t, lp), "top_logprobs": [entry(u, ulp) for u, ulp in top]} for t, lp, top in tokens],
        "refusal": None,
    }


def completion_logprobs(tokens: Optional[list[Any]]) -> Optional[dict[str, Any]]:
    """A completion choice's legacy `logprobs`: tokens, token_logprobs, top_logprobs (token -> logprob), text_offset."""
    if tokens is None:
        return None
    offsets, at = [], 0
    for text, _, _ in tokens:
        offsets.append(at)
        at += len(text)
    return {
        "tokens": [t for t, _, _ in tokens],
        "token_logprobs": [lp for _, lp, _ in tokens],
        "top_logprobs": [dict(top) for _, _, top in tokens],
        "text_offset": offsets,
    }


def chat_completion(model: str, answer: dict[str, Any]) -> dict[str, Any]:
    """`chat.completion`: the answer's n choices ({text, finish_reason, tokens}) and its token counts."""

    def message(choice: dict[str, Any]) -> dict[str, Any]:
        calls = {"tool_calls": choice["tool_calls"]} if choice.get("tool_calls") else {}
        return {"role": "assistant", "content": choice["text"], **calls}

    choices = [
        {"index": i, "message": message(c), "finish_reason": c["finish_reason"], "logprobs": chat_logprobs(c["tokens"])}
        for i, c in enumerate(answer["choices"])
    ]
    return {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": _usage_of([answer]),
    }


def text_completion(model: str, answers: list[dict[str, Any]]) -> dict[str, Any]:
    """`text_completion`: n choices per prompt, in prompt order."""
    flat = [c for a in answers for c in a["choices"]]
    choices = [
        {"index": i, "text": c["text"], "finish_reason": c["finish_reason"], "logprobs": completion_logprobs(c["tokens"])}
        for i, c in enumerate(flat)
    ]
    return {
        "id": new_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": _usage_of(answers),
    }


def embedding_list(model: str, results: list[dict[str, Any]], encoding_format: str) -> dict[str, Any]:
    """OpenAI's embeddings response: one `embedding` per input ({embedding: float32 vector, tokens}), as a list of
    floats or as base64 of the little-endian float32 bytes (what the openai client decodes)."""
    import base64

    import numpy as np

    def encoded(vector: Any) -> Any:
        if encoding_format == "base64":
            return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
        return [float(x) for x in vector]

    data = [{"object": "embedding", "index": i, "embedding": encoded(r["embedding"])} for i, r in enumerate(results)]
    tokens = sum(r["tokens"] for r in results)
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def stream_chunk(
    chat: bool,
    stream_id: str,
    model: str,
    text: Optional[str],
    finish_reason: Optional[str] = None,
    first: bool = False,
    with_usage: bool = False,
) -> dict[str, Any]:
    """One server-sent event's JSON: a `chat.completion.chunk` delta or a `text_completion` piece (with `usage: null`
    when the request asked for a usage chunk at the end, as OpenAI sends them)."""
    if chat:
        delta: dict[str, Any] = {"role": "assistant", "content": text or ""} if first else ({"content": text} if text else {})
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        kind = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": finish_reason, "logprobs": None}
        kind = "text_completion"
    chunk = {"id": stream_id, "object": kind, "created": int(time.time()), "model": model, "choices": [choice]}
    return {**chunk, "usage": None} if with_usage else chunk


def usage_chunk(chat: bool, stream_id: str, model: str, answer: dict[str, Any]) -> dict[str, Any]:
    """The last event of a stream with stream_options.include_usage: no choices, the request's usage."""
    kind = "chat.completion.chunk" if chat else "text_completion"
    return {
        "id": stream_id,
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": _usage_of([answer]),
    }
