"""Streamed requests inside a batch: each one's tokens, as the batch decodes them, become text handed to its response
through its Stream; its answer ends (an EOS, a stop string, max_tokens) and its stream closes while the batch goes on;
a client that left stops its own row. Runs in the batcher's thread; the Stream's `send` crosses to the event loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from llmft.config import GenerationConfig
from llmft.inference.generation import Choice, answer_if_over


@dataclass
class Stream:
    """The handoff from the batcher's thread to one streamed response: `send` takes text pieces (str), then one last
    item, the answer (a dict) or the request's error (an exception); `gone` says whether the client has left."""

    send: Callable[[Any], None]
    gone: Callable[[], bool]


class StreamedRows:
    """generation.RowListener for one decoding: prompt index -> its request's Stream. Text goes out as transformers'
    TextStreamer (what `llmft generate` streams with) finalizes it; `answer(index, choice)` makes the final item."""

    def __init__(
        self,
        tokenizer: Any,
        cfg: GenerationConfig,
        ends: set[int],
        streams: dict[int, Stream],
        answer: Callable[[int, Choice], Any],
    ) -> None:
        self.tokenizer, self.cfg, self.ends, self.streams, self.answer = tokenizer, cfg, ends, streams, answer
        self.ids: dict[int, list[int]] = {i: [] for i in streams}
        self.texts = {i: _text_streamer(tokenizer, stream.send) for i, stream in streams.items()}
        self.done: set[int] = set()

    def token(self, index: int, token: int) -> None:
        """One new token of prompt `index` (ignored for a prompt not streamed, or whose answer is over)."""
        if index not in self.streams or index in self.done or self.streams[index].gone():
            return
        self.ids[index].append(token)
        self.texts[index].put(torch.tensor([token]))
        choice = answer_if_over(self.tokenizer, self.ids[index], self.ends, self.cfg)
        if choice is not None:
            self.done.add(index)
            self.texts[index].end()
            self.streams[index].send(self.answer(index, choice))

    def finished(self, index: int) -> bool:
        """Whether prompt `index`'s row may stop decoding: its answer is over or its client left."""
        return index in self.done or (index in self.streams and self.streams[index].gone())


def _text_streamer(tokenizer: Any, send: Callable[[Any], None]) -> Any:
    from transformers import TextStreamer

    class RequestText(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                send(text)

    return RequestText(tokenizer, skip_prompt=False, skip_special_tokens=True)
