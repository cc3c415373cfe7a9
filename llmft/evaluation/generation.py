"""Batched generation: greedy, sampling (temperature, top-k, top-p), beam search, repetition penalty,
stop strings. Decoder-only models are padded on the left; prompts are length-sorted into batches and cut on the side
training cut them."""

from __future__ import annotations

from typing import Any, Iterator, Optional

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
    decoder_only = not model.config.is_encoder_decoder
    limit = max(max_length - cfg.max_new_tokens, (max_length + 1) // 2) if decoder_only else max_length
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left" if decoder_only else "right"  # decoder-only models continue from the last token
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=add_special_tokens, verbose=False)["input_ids"]]
    outputs: list[str] = [""] * len(prompts)
    try:
        with eval_mode(model):
            for batch in _length_sorted_batches(lengths, cfg.batch_size):
                with truncating_on(tokenizer, truncation_side):
                    enc = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True, truncation=True,
                                    max_length=limit, add_special_tokens=add_special_tokens).to(device)
                out = model.generate(**enc, **generate_kwargs(cfg, tokenizer, model), streamer=streamer)
                new = out[:, enc["input_ids"].shape[1] :] if decoder_only else out
                for i, text in zip(batch, tokenizer.batch_decode(new, skip_special_tokens=True)):
                    outputs[i] = cut_at_stop(text, cfg.stop).strip()
    finally:
        tokenizer.padding_side = padding_side
    return outputs
