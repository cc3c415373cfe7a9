"""Request bodies in OpenAI's shapes (pydantic checks them; a bad field is a 400 naming it) and the response and
stream-chunk dictionaries the openai client parses."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use (user, logprobs=None, ...)


SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.manual_seed takes


class Sampling(_Request):
    """The per-request generation settings; unset ones take the run's task.generation. (The served model checks that
    max_tokens fits its positions after the prompt.)"""

    model: Optional[str] = None  # when given, must be the served model's id
    max_tokens: Optional[int] = Field(None, ge=1, le=2**31 - 1)  # the served model checks its own positions too
    max_completion_tokens: Optional[int] = Field(None, ge=1, le=2**31 - 1)  # the newer name of max_tokens
    temperature: Optional[float] = Field(None, ge=0, le=2)  # 0: greedy; > 0 samples
    top_p: Optional[float] = Field(None, gt=0, le=1)
    stop: Optional[Union[str, list[str]]] = None
    seed: Optional[int] = None
    n: int = Field(1, ge=1, le=1)  # one choice per prompt
    stream: bool = False

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
    role: Literal["system", "user", "assistant"]
    content: str


class ChatCompletionRequest(Sampling):
    messages: list[ChatMessage] = Field(min_length=1)


class CompletionRequest(Sampling):
    prompt: Union[str, list[str]]


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
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


def chat_completion(model: str, answers: list[dict[str, Any]]) -> dict[str, Any]:
    """`chat.completion`: one choice per answer ({text, finish_reason, prompt_tokens, completion_tokens})."""
    choices = [{"index": i, "message": {"role": "assistant", "content": a["text"]}, "finish_reason": a["finish_reason"],
                "logprobs": None} for i, a in enumerate(answers)]
    return {"id": new_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": usage(sum(a["prompt_tokens"] for a in answers), sum(a["completion_tokens"] for a in answers))}


def text_completion(model: str, answers: list[dict[str, Any]]) -> dict[str, Any]:
    """`text_completion`: one choice per prompt."""
    choices = [{"index": i, "text": a["text"], "finish_reason": a["finish_reason"], "logprobs": None} for i, a in enumerate(answers)]
    return {"id": new_id("cmpl"), "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": usage(sum(a["prompt_tokens"] for a in answers), sum(a["completion_tokens"] for a in answers))}


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


def stream_chunk(chat: bool, stream_id: str, model: str, text: Optional[str], finish_reason: Optional[str] = None,
                 first: bool = False) -> dict[str, Any]:
    """One server-sent event's JSON: a `chat.completion.chunk` delta or a `text_completion` piece."""
    if chat:
        delta: dict[str, Any] = {"role": "assistant", "content": text or ""} if first else ({"content": text} if text else {})
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        kind = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": finish_reason, "logprobs": None}
        kind = "text_completion"
    return {"id": stream_id, "object": kind, "created": int(time.time()), "model": model, "choices": [choice]}
