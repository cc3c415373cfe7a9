"""The exporter checks its own work: the exported model and the PyTorch checkpoint run on the same test batches;
agreement (same predicted label / answer span / next token) and the largest logit difference decide."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from llmft.export.heads import Head

DEFAULT_MIN_AGREEMENT = 0.99  # fp32 and f16 graphs compute the same function up to rounding
DEFAULT_MIN_AGREEMENT_QUANTIZED = 0.95  # int8 weights move logits; a near-tie may flip (sentence-transformers: ~0.4 points)

Runner = Callable[[dict[str, np.ndarray]], list[np.ndarray]]  # a batch of inputs -> the head's outputs, in order
GREEDY_STEPS = 16  # encoder-decoders: answer tokens compared per test row


@dataclass
class Verification:
    agreeing: int
    compared: int
    max_abs_diff: float
    min_agreement: float
    item: str  # what was compared (rows, windows, tokens)

    @property
    def agreement(self) -> float:
        return self.agreeing / self.compared if self.compared else 0.0

    @property
    def passed(self) -> bool:
        return self.compared > 0 and self.agreement >= self.min_agreement

    def line(self) -> str:
        return (
            f"agreement {self.agreement:.4f} ({self.agreeing}/{self.compared} {self.item}), max |logit diff| "
            f"{self.max_abs_diff:.3g}, bar {self.min_agreement}"
        )


def torch_runner(model: Any, head: Head) -> Runner:
    """The PyTorch checkpoint as a Runner (fp32, CPU, no grad); an encoder-decoder's greedy `generate`."""
    import torch

    if head.generates:
        return greedy_runner(model)

    def run(batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.inference_mode():
            result = model(**{k: torch.from_numpy(v) for k, v in batch.items()})
        return [getattr(result, name).float().numpy() for name in head.outputs]

    return run


def greedy_runner(model: Any) -> Runner:
    """transformers' greedy `generate` as a Runner: [answer tokens (decoder start token dropped), each step's raw
    logits] for GREEDY_STEPS new tokens at most (the checkpoint's other generation settings neutral)."""
    import torch

    def run(batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.inference_mode():
            out = model.generate(
                **{k: torch.from_numpy(v) for k, v in batch.items()},
                max_new_tokens=GREEDY_STEPS,
                min_new_tokens=0,
                do_sample=False,
                num_beams=1,
                repetition_penalty=1.0,
                no_repeat_ngram_size=0,
                return_dict_in_generate=True,
                output_logits=True,
            )
        return [out.sequences[:, 1:].numpy(), torch.stack(out.logits, 1).float().numpy()]

    return run


def onnx_runner(session: Any) -> Runner:
    """An onnxruntime session as a Runner (feeds the inputs the graph names; a decoder's graph with a KV cache gets
    position ids from the mask and an empty cache, as the first step of decoding feeds it)."""
    inputs = session.get_inputs()
    return lambda batch: session.run(None, {i.name: _input(i, batch) for i in inputs})


def _input(spec: Any, batch: dict[str, np.ndarray]) -> np.ndarray:
    if spec.name in batch:
        return batch[spec.name]
    mask = batch["attention_mask"]
    if spec.name == "position_ids":
        return np.clip(mask.cumsum(-1) - 1, 0, None).astype(np.int64)  # left padding: each row counts from its first token
    if spec.name.startswith("past_key_values."):
        return np.zeros((len(mask), spec.shape[1], 0, spec.shape[3]), dtype=np.float32)  # (batch, heads, 0, head dim)
    raise KeyError(f"the graph takes {spec.name}, which the test batches do not hold")


def verify(
    exported: Runner, reference: Runner, batches: list[dict[str, np.ndarray]], head: Head, min_agreement: float
) -> Verification:
    """Compare the two runners batch by batch (no logits are kept: a decoder's vocabulary-wide logits are large)."""
    agreeing = compared = 0
    diff = 0.0
    for batch in batches:
        a, n, d = head.agreeing(exported(batch), reference(batch), batch["attention_mask"])
        agreeing, compared, diff = agreeing + a, compared + n, max(diff, d)
    return Verification(agreeing, compared, diff, min_agreement, head.item)
