"""Batched generation: greedy, sampling (temperature, top-k, top-p), beam search, repetition penalty,
stop strings. Decoder-only models are padded on the left; prompts are length-sorted into batches and cut on the side
training cut them."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Protocol

import torch

from llmft.config import GenerationConfig, Side
from llmft.data.truncation import truncating_on
from llmft.models.eval_mode import eval_mode


def eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every id that ends a generation: the tokenizer's EOS and those the model's generation_config lists (chat models
    end a turn with a second one, e.g. Llama 3's <|eot_id|>, Qwen's <|im_end|>)."""
    listed = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    listed = listed if isinstance(listed, (list, tuple)) else [listed]
    return list(dict.fromkeys(int(i) for i in [tokenizer.eos_token_id, *listed] if i is not None))


def generate_kwargs(cfg: GenerationConfig, tokenizer: Any, model: Any = None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "max_new_tokens": cfg.max_new_tokens,
        "num_beams": cfg.num_beams,
        "repetition_penalty": cfg.repetition_penalty,
        "do_sample": cfg.do_sample,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": eos_ids(model, tokenizer) or None,
    }
    if cfg.do_sample:
        kwargs.update(temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p)
    return kwargs


def cut_at_stop(text: str, stops: list[str]) -> str:
    """The text before the first stop string."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:cut]


def _length_sorted_batches(lengths: list[int], batch_size: int) -> Iterator[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])  # similar lengths together: less padding
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _encoded_batches(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    cfg: GenerationConfig,
    device: torch.device,
    max_length: int,
    add_special_tokens: bool,
    truncation_side: Side,
) -> Iterator[tuple[list[int], Any]]:
    """(prompt indices, their padded encoding): length-sorted batches, cut as `generate` documents. The tokenizer pads on
    the decoder's side while the caller consumes the batches."""
    decoder_only = not model.config.is_encoder_decoder
    limit = max(max_length - cfg.max_new_tokens, (max_length + 1) // 2) if decoder_only else max_length
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left" if decoder_only else "right"  # decoder-only models continue from the last token
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=add_special_tokens, verbose=False)["input_ids"]]
    try:
        with eval_mode(model):
            for batch in _length_sorted_batches(lengths, cfg.batch_size):
                with truncating_on(tokenizer, truncation_side):
                    enc = tokenizer(
                        [prompts[i] for i in batch],
                        return_tensors="pt",
                        padding=True,
                        truncation=True,
                        max_length=limit,
                        add_special_tokens=add_special_tokens,
                    ).to(device)
                yield batch, enc
    finally:
        tokenizer.padding_side = padding_side


def _new_tokens(model: Any, enc: Any, sequences: torch.Tensor) -> torch.Tensor:
    """The generated columns of `generate`'s output (a decoder repeats the prompt; an encoder-decoder starts with its
    decoder start token)."""
    return sequences[:, enc["input_ids"].shape[1] :] if not model.config.is_encoder_decoder else sequences[:, 1:]


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    cfg: GenerationConfig,
    device: torch.device,
    max_length: int = 1024,
    streamer: Optional[Any] = None,
    add_special_tokens: bool = True,
    truncation_side: Side = Side.right,
) -> list[str]:
    """The continuation of each prompt (new tokens only, special tokens removed, cut at stop strings).

    A too-long prompt is cut on `truncation_side`, the side training cut on (decoders: left by default, keeping the
    prompt's end and its cue); a decoder's prompt keeps at most max_length - max_new_tokens tokens, so prompt and
    answer fit the length the model was trained on, but never less than half of max_length (a long answer asked of a
    model with room beyond its training length). `add_special_tokens=False` when the prompt text already carries them
    (a rendered chat template)."""
    outputs: list[str] = [""] * len(prompts)
    batches = _encoded_batches(model, tokenizer, prompts, cfg, device, max_length, add_special_tokens, truncation_side)
    with contextlib.closing(batches):  # the tokenizer's padding side and the model's mode come back even on an error
        for batch, enc in batches:
            out = model.generate(**enc, **generate_kwargs(cfg, tokenizer, model), streamer=streamer)
            new = out[:, enc["input_ids"].shape[1] :] if not model.config.is_encoder_decoder else out
            for i, text in zip(batch, tokenizer.batch_decode(new, skip_special_tokens=True)):
                outputs[i] = cut_at_stop(text, cfg.stop).strip()
    return outputs


@dataclass
class Choice:
    """One generated answer with what an API reports of it: the text `generate` returns, why it ended, the tokens it
    took (up to and with the EOS or the token completing a stop string) and each one's log-probability under the model
    (log-softmax of its raw logits), with the `top` most likely tokens at each step when asked."""

    text: str
    finish_reason: str  # "stop" (EOS or a stop string) or "length"
    token_ids: list[int]
    logprobs: list[float]  # empty unless asked
    top: list[list[tuple[int, float]]]  # per token, (id, logprob) best first; empty unless asked


class RowListener(Protocol):
    """Hears each prompt's tokens as its batch decodes them (`llmft serve` streams from it). A prompt the listener calls
    `finished` (its answer ended, its client left) decodes no further, while the other rows of its batch go on."""

    def token(self, index: int, token: int) -> None: ...

    def finished(self, index: int) -> bool: ...


class _RowFeed:
    """transformers' streamer and stopping criterion for one batch, the listener behind both: row r is prompt batch[r]."""

    def __init__(self, batch: list[int], listener: RowListener) -> None:
        self.batch, self.listener, self.prompt_seen = batch, listener, False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # the first put is the prompt (a decoder) or the decoder's start token (encoder-decoder)
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            self.listener.token(self.batch[row], token)

    def end(self) -> None:
        """Nothing is held back: each token went to the listener as it came."""

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        return torch.tensor([self.listener.finished(i) for i in self.batch], dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def generate_choices(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    cfg: GenerationConfig,
    device: torch.device,
    max_length: int = 1024,
    listener: Optional[RowListener] = None,
    add_special_tokens: bool = True,
    truncation_side: Side = Side.right,
    top_logprobs: Optional[int] = None,
    processors: Optional[Callable[[], list[Any]]] = None,
) -> list[Choice]:
    """`generate` with each answer's tokens and finish reason (what `llmft serve` reports), and with `top_logprobs`
    k (not None; greedy or sampling, not beam search) each token's log-probability and the k most likely tokens; the
    texts equal `generate`'s for the same prompts, settings and seed. `processors` makes fresh logits processors for
    each batch's decoding (a grammar that constrains the answer). `listener` hears every prompt's tokens step by step
    (not with beam search, whose rows are beams: there it hears nothing)."""
    if top_logprobs is not None and cfg.num_beams > 1:
        raise ValueError("log-probabilities are not reported with beam search")  # its logits rows are beams, not prompts
    choices: list[Optional[Choice]] = [None] * len(prompts)
    batches = _encoded_batches(model, tokenizer, prompts, cfg, device, max_length, add_special_tokens, truncation_side)
    with contextlib.closing(batches):
        _choose(
            model, tokenizer, cfg, batches, listener if cfg.num_beams == 1 else None, top_logprobs, choices, processors or list
        )
    return choices  # type: ignore[return-value]


def _choose(
    model: Any,
    tokenizer: Any,
    cfg: GenerationConfig,
    batches: Iterator[tuple[list[int], Any]],
    listener: Optional[RowListener],
    top_logprobs: Optional[int],
    choices: list[Optional[Choice]],
    processors: Callable[[], list[Any]],
) -> None:
    """Decode each batch and fill in the choices of its prompts."""
    ends = set(eos_ids(model, tokenizer))
    for batch, enc in batches:
        wanted = top_logprobs is not None
        feed = _RowFeed(batch, listener) if listener is not None else None
        out = model.generate(
            **enc,
            **generate_kwargs(cfg, tokenizer, model),
            streamer=feed,
            stopping_criteria=[feed] if feed is not None else None,
            return_dict_in_generate=True,
            output_logits=wanted,
            logits_processor=processors() or None,
        )
        new = _new_tokens(model, enc, out.sequences)
        logprobs = torch.stack(out.logits, dim=1).float().log_softmax(-1) if wanted else None  # [batch, steps, vocab], raw
        for row, i in enumerate(batch):
            ids = new[row].tolist()
            kept, finish = _kept_tokens(tokenizer, ids, ends, cfg.stop)
            chosen = logprobs[row, torch.arange(kept), new[row, :kept]].tolist() if logprobs is not None else []
            top = (
                [_top(logprobs[row, step], top_logprobs) for step in range(kept)] if logprobs is not None and top_logprobs else []
            )
            choices[i] = Choice(answer_text(tokenizer, ids[:kept], cfg.stop), finish, ids[:kept], chosen, top)


def answer_text(tokenizer: Any, ids: list[int], stops: list[str]) -> str:
    """The text of an answer's tokens as `generate` returns it: special tokens removed, cut at the first stop string,
    stripped."""
    return cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), stops).strip()


def answer_if_over(tokenizer: Any, ids: list[int], ends: set[int], cfg: GenerationConfig) -> Optional[Choice]:
    """The answer so far as its Choice (no log-probabilities) once it is over: its last token is an EOS, completes a
    stop string or is the max_new_tokens-th; None while it goes on. Equal to what `generate_choices` returns for it."""
    over = ids[-1] in ends or len(ids) >= cfg.max_new_tokens
    if not over and cfg.stop:
        text = tokenizer.decode(ids, skip_special_tokens=True)
        over = len(cut_at_stop(text, cfg.stop)) < len(text)
    if not over:
        return None
    kept, finish = _kept_tokens(tokenizer, ids, ends, cfg.stop)
    return Choice(answer_text(tokenizer, ids[:kept], cfg.stop), finish, ids[:kept], [], [])


def _kept_tokens(tokenizer: Any, ids: list[int], ends: set[int], stops: list[str]) -> tuple[int, str]:
    """How many generated tokens an answer took, and why it ended: through the first token that completes a stop string
    or is an EOS, else all of them (it ran out of max_new_tokens)."""
    end = next((k + 1 for k, token in enumerate(ids) if token in ends), None)
    if stops:
        for k in range(1, (end or len(ids)) + 1):
            text = tokenizer.decode(ids[:k], skip_special_tokens=True)
            if len(cut_at_stop(text, stops)) < len(text):
                return k, "stop"
    return (end, "stop") if end is not None else (len(ids), "length")


def _top(logprobs: torch.Tensor, k: int) -> list[tuple[int, float]]:
    values, ids = logprobs.topk(k)
    return list(zip(ids.tolist(), values.tolist()))
