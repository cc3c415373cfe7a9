"""A decoder's ONNX export (its graph with a KV cache, optimum's names: llmft.export.kv_cache) as a model transformers'
`generate` drives: the prompt goes through the graph once (prefill), then each step feeds only the new token with the
cache the graph returned. Everything `generate` does around the forward pass (greedy, sampling under
temperature/top-k/top-p and torch's seed, repetition penalty, logits processors, stopping criteria, streamers, the
logits it returns) is transformers' own code, so `inference.generation.generate_choices` runs on it unchanged, as
optimum's ORTModelForCausalLM runs on transformers' GenerationMixin. A seq2seq export (optimum's three graphs:
llmft.export.seq2seq_onnx) runs the same way in OnnxSeq2SeqLM: `generate` runs the encoder graph once, the first decoder
step fills the self- and cross-attention caches, each later step feeds the new token and the caches."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Optional

import numpy as np
import torch
from transformers import GenerationConfig, GenerationMixin
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput, CausalLMOutputWithPast, Seq2SeqLMOutput

PAST_PREFIX = "past_key_values."


class _OnnxGenerating(GenerationMixin):
    """What transformers' `generate` and llmft's callers read of a model, for graphs on onnxruntime (CPU, fp32)."""

    _is_stateful = False
    training = False
    base_model_prefix = ""  # no inner model for generate's argument checks to look into

    def __init__(self, config: Any, generation_config: Optional[GenerationConfig], vocab_size: int) -> None:
        self.config = config
        self.generation_config = generation_config or GenerationConfig.from_model_config(config)
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.vocab_size = vocab_size

    def to(self, device: Any) -> Any:
        if torch.device(device).type != "cpu":
            raise ValueError(f"an ONNX export runs on onnxruntime's CPU provider, not {device}")
        return self

    def eval(self) -> Any:
        return self

    def train(self, mode: bool = True) -> Any:
        return self  # nothing trains: no dropout to switch

    @classmethod
    def can_generate(cls) -> bool:
        return True

    def is_remote_code(self) -> bool:
        return False

    def get_experts_implementation(self) -> dict[str, Any]:
        return {}  # no mixture-of-experts layers for `generate` to switch

    def get_output_embeddings(self) -> Any:
        """Only the width of the logits (what grammars size their token masks by): the graph's vocabulary axis."""
        return SimpleNamespace(weight=SimpleNamespace(shape=(self.vocab_size, 0)))

    def __call__(self, **kwargs: Any) -> Any:
        return self.forward(**kwargs)


class OnnxCausalLM(_OnnxGenerating):
    """An onnxruntime session of a decoder's cache graph, called as transformers calls a causal LM."""

    main_input_name = "input_ids"

    def __init__(self, session: Any, config: Any, generation_config: Optional[GenerationConfig] = None) -> None:
        super().__init__(config, generation_config, int(session.get_outputs()[0].shape[-1]))
        self.session = session
        self.inputs = [i.name for i in session.get_inputs()]
        self.past_names = [n for n in self.inputs if n.startswith(PAST_PREFIX)]
        if not self.past_names:
            raise ValueError("the ONNX graph takes no past_key_values: it is not a decoder export with a KV cache")
        past = next(i for i in session.get_inputs() if i.name == self.past_names[0])
        self.kv_heads, self.head_dim = int(past.shape[1]), int(past.shape[3])  # the export's static axes

    # --- the forward pass -------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        cache: Optional[DynamicCache] = None,
        **_: Any,
    ) -> CausalLMOutputWithPast:
        """The logits of the new tokens `input_ids` after the cached ones; `cache` (transformers' DynamicCache, made
        by `generate`) grows by the new tokens' keys and values."""
        batch, new = input_ids.shape
        cache = cache if cache is not None else DynamicCache()
        past = cache.get_seq_length()
        if attention_mask is None:
            attention_mask = torch.ones((batch, past + new), dtype=torch.long)
        if position_ids is None:  # left padding: each row counts from its first attended token
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -new:]
        feed = {
            "input_ids": _numpy(input_ids),
            "attention_mask": _numpy(attention_mask),
            "position_ids": _numpy(position_ids),
            **self._past_feed(cache, batch),
        }
        logits, *presents = self.session.run(None, {name: feed[name] for name in self.inputs})
        for layer in range(len(presents) // 2):
            key, value = presents[2 * layer], presents[2 * layer + 1]
            cache.update(torch.from_numpy(key[:, :, past:]), torch.from_numpy(value[:, :, past:]), layer)
        return CausalLMOutputWithPast(logits=torch.from_numpy(logits), cache=cache)

    def _past_feed(self, cache: DynamicCache, batch: int) -> dict[str, np.ndarray]:
        """The cache's tensors under the graph's input names (zero-length ones before the first step)."""
        layers = len(self.past_names) // 2
        if cache.get_seq_length() == 0:
            empty = np.zeros((batch, self.kv_heads, 0, self.head_dim), dtype=np.float32)
            return {name: empty for name in self.past_names}
        tensors = [t for i in range(layers) for t in (cache.layers[i].keys, cache.layers[i].values)]
        return {name: _numpy(t) for name, t in zip(self.past_names, tensors)}


class _Encoder:
    """The encoder graph as `generate` calls an encoder (it reads `forward`'s signature, then calls the object)."""

    def __init__(self, forward: Any) -> None:
        self.forward = forward

    def __call__(self, **kwargs: Any) -> Any:
        return self.forward(**kwargs)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    array = tensor.detach().cpu().numpy()
    return array.astype(np.int64) if array.dtype.kind in "iub" else np.ascontiguousarray(array, dtype=np.float32)


class OnnxSeq2SeqLM(_OnnxGenerating):
    """optimum's three seq2seq graphs (encoder, first decoder step, decoder step with past) as onnxruntime sessions,
    called as transformers calls an encoder-decoder."""

    main_input_name = "input_ids"

    def __init__(self, encoder: Any, first: Any, step: Any, config: Any, generation_config: Optional[GenerationConfig]) -> None:
        super().__init__(config, generation_config, int(first.get_outputs()[0].shape[-1]))
        self.encoder_graph, self.first_graph, self.step_graph = encoder, first, step  # not `encoder`: generate reads that
        self.past_names = [i.name for i in step.get_inputs() if i.name.startswith(PAST_PREFIX)]

    def get_encoder(self) -> Any:
        return _Encoder(self._encode)

    def _encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> BaseModelOutput:
        feed = {"input_ids": _numpy(input_ids), "attention_mask": _numpy(attention_mask)}
        return BaseModelOutput(last_hidden_state=torch.from_numpy(self.encoder_graph.run(None, feed)[0]))

    def forward(
        self,
        decoder_input_ids: torch.Tensor,
        encoder_outputs: Any,
        attention_mask: torch.Tensor,
        cache: Optional[EncoderDecoderCache] = None,
        **_: Any,
    ) -> Seq2SeqLMOutput:
        """The logits of the new decoder tokens; `cache` (made by `generate`) gets the cross-attention keys/values at the
        first step and the new tokens' self-attention ones at every step."""
        cache = cache if cache is not None else EncoderDecoderCache(DynamicCache(), DynamicCache())
        mask, past = _numpy(attention_mask), cache.self_attention_cache.get_seq_length()
        if past == 0:
            states = _numpy(encoder_outputs[0])
            feed = {"input_ids": _numpy(decoder_input_ids), "encoder_attention_mask": mask, "encoder_hidden_states": states}
            logits, *presents = self.first_graph.run(None, feed)
            for layer in range(len(presents) // 4):
                own_key, own_value, cross_key, cross_value = (torch.from_numpy(t) for t in presents[4 * layer : 4 * layer + 4])
                cache.self_attention_cache.update(own_key, own_value, layer)
                cache.cross_attention_cache.update(cross_key, cross_value, layer)
                cache.is_updated[layer] = True
            return Seq2SeqLMOutput(logits=torch.from_numpy(logits), cache=cache)
        layers = [
            (cache.self_attention_cache.layers[i], cache.cross_attention_cache.layers[i])
            for i in range(len(self.past_names) // 4)
        ]
        tensors = [t for own, cross in layers for t in (own.keys, own.values, cross.keys, cross.values)]
        feed = {"input_ids": _numpy(decoder_input_ids), "encoder_attention_mask": mask}
        logits, *presents = self.step_graph.run(None, {**feed, **{n: _numpy(t) for n, t in zip(self.past_names, tensors)}})
        for layer in range(len(presents) // 2):
            key, value = presents[2 * layer], presents[2 * layer + 1]
            cache.self_attention_cache.update(torch.from_numpy(key[:, :, past:]), torch.from_numpy(value[:, :, past:]), layer)
        return Seq2SeqLMOutput(logits=torch.from_numpy(logits), cache=cache)
