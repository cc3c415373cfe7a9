"""Token cross-entropy without the whole batch's `(tokens, vocabulary)` logits.

A decoder's loss is usually `cross_entropy(lm_head(hidden).float(), targets)`: the logits of every position, an fp32 copy
and log-softmax's output, three tensors of `batch x tokens x vocabulary` (3.2 GB each for SmolLM2 at 32 x 512). Here
the output layer and the loss run together over chunks of the supervised rows only (prompt and padding positions never
reach the output layer): each chunk's logits live for one loop iteration, and the gradients of the hidden states and
of the output layer's weight are computed in that same pass (what Liger's fused linear cross-entropy does on CUDA, in
torch's own ops), so the backward holds no logits either. Loss and gradients equal the plain path's.

The model's forward still runs as written; a pre-hook on its output layer takes the final hidden states (after any
final norm or rescaling the model applies before the head), computes the loss, and hands the head a zero-length
sequence. Models whose logits are more than `head(hidden)` (soft-capping, logit scales, a bias added after the head)
are not on `SPLITTABLE` and take the plain path.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F

IGNORE = -100  # label of a position that is not a target (torch's cross-entropy ignore_index)
CHUNK_ELEMENTS = 1 << 26  # logits per chunk (256 MB in fp32): rows per chunk = this // vocabulary
# model types whose forward computes exactly `logits = output_layer(hidden)` (checked in their transformers source)
SPLITTABLE = frozenset({"llama", "mistral", "qwen2", "qwen3", "gpt2", "t5", "mt5", "phi3", "olmo2", "smollm3"})


def _grad_buffers(needs: tuple, hidden: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> tuple:
    """Zeroed gradients of hidden, weight (fp32) and bias (fp32) for the inputs that need one, else None."""
    grad_h = torch.zeros_like(hidden) if needs[0] else None
    grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if needs[1] else None
    grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if bias is not None and needs[2] else None
    return grad_h, grad_w, grad_b


def _add_head_grads(
    d_logits: torch.Tensor,
    h: torch.Tensor,
    w: Optional[torch.Tensor],
    rows: slice,
    grad_h: Optional[torch.Tensor],
    grad_w: Optional[torch.Tensor],
    grad_b: Optional[torch.Tensor],
) -> None:
    """One chunk's gradient of the logits (fp32) through the output layer: into the hidden states' rows `rows`, and
    summed into the weight's and bias's gradients (each only where it is wanted, i.e. not None)."""
    g = d_logits.to(h.dtype)
    if grad_h is not None:
        grad_h[rows] = torch.mm(g, w)
    if grad_w is not None:
        grad_w += torch.mm(g.t(), h).float()
    if grad_b is not None:
        grad_b += d_logits.sum(0)


class _LinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `hidden @ weight.T + bias` against `targets`, chunk by chunk; the backward only scales
    the gradients the forward already computed."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: Optional[torch.Tensor],
        targets: torch.Tensor,
        rows_per_chunk: int,
    ) -> torch.Tensor:
        grad_h, grad_w, grad_b = _grad_buffers(ctx.needs_input_grad, hidden, weight, bias)
        want_h, want_w, want_b = grad_h is not None, grad_w is not None, grad_b is not None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        w = weight.to(hidden.dtype) if want_h else None  # one cast for every chunk (a no-op in fp32)
        for start in range(0, hidden.shape[0], rows_per_chunk):
            h, t = hidden[start : start + rows_per_chunk], targets[start : start + rows_per_chunk]
            logits = F.linear(h, weight, bias).float()
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            if not (want_h or want_w or want_b):
                continue
            probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
            probs[torch.arange(len(t), device=t.device), t] -= 1.0  # d loss / d logits
            _add_head_grads(probs, h, w, slice(start, start + rows_per_chunk), grad_h, grad_w, grad_b)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple:
        grad_h, grad_w, grad_b = ctx.saved_tensors
        w_dtype, b_dtype = ctx.dtypes

        def scale(g: Optional[torch.Tensor], dtype: Optional[torch.dtype]) -> Optional[torch.Tensor]:
            return None if g is None else (g * grad_out).to(dtype or g.dtype)

        return scale(grad_h, None), scale(grad_w, w_dtype), scale(grad_b, b_dtype), None, None


def linear_cross_entropy_sum(
    hidden: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], targets: torch.Tensor
) -> torch.Tensor:
    """Summed cross-entropy of the output layer `(weight, bias)` applied to `hidden` (..., H) against `targets` (...),
    positions labelled IGNORE skipped; never more than one chunk of logits at a time."""
    hidden, targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1).to(hidden.device)
    rows = (targets != IGNORE).nonzero().squeeze(1)
    rows_per_chunk = max(1, CHUNK_ELEMENTS // weight.shape[0])
    return _LinearCrossEntropy.apply(hidden.index_select(0, rows), weight, bias, targets.index_select(0, rows), rows_per_chunk)


def plain_cross_entropy_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The reference: summed cross-entropy over supervised positions of fully materialised logits."""
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )


def inner_model(model: Any) -> Any:
    """The model under the data-parallel and compile wrappers (peft forwards what it wraps)."""
    for attr in ("module", "_orig_mod"):
        while hasattr(model, attr) and isinstance(getattr(model, attr), torch.nn.Module):
            model = getattr(model, attr)
    return model


def split_head(model: Any) -> Optional[torch.nn.Linear]:
    """The model's output layer when the loss may be computed from its input in chunks, else None (plain path)."""
    inner = inner_model(model)
    config = getattr(inner, "config", None)
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if getattr(config, "model_type", None) not in SPLITTABLE or type(head) is not torch.nn.Linear:
        return None  # a LoRA-wrapped or otherwise replaced head computes more than weight and bias
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return None
    return head


@contextmanager
def _head_takes_loss(head: torch.nn.Linear, targets: torch.Tensor, out: dict[str, torch.Tensor]) -> Iterator[None]:
    """While active, the head's input goes to the chunked loss (into `out['loss']`) and the head itself computes the
    logits of zero positions."""

    def hook(module: torch.nn.Linear, args: tuple) -> tuple:
        hidden = args[0]
        out["loss"] = linear_cross_entropy_sum(hidden, module.weight, module.bias, targets)
        return (hidden[..., :0, :], *args[1:])

    handle = head.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def token_loss_sum(model: Any, inputs: dict[str, torch.Tensor], targets: torch.Tensor, chunked: bool = True) -> torch.Tensor:
    """Summed next-token (or target-token) cross-entropy of `model(**inputs)` against `targets` aligned with the
    output positions (IGNORE: not a target). Chunked through the output layer when the model allows it and `chunked`;
    otherwise the plain path over the full logits."""
    head = split_head(model) if chunked else None
    if head is None:
        return plain_cross_entropy_sum(model(**inputs, use_cache=False).logits, targets)
    out: dict[str, torch.Tensor] = {}
    with _head_takes_loss(head, targets, out):
        model(**inputs, use_cache=False)
    return out["loss"]


class _LinearTokenLogps(torch.autograd.Function):
    """Log-probabilities of `targets` under `softmax(hidden @ weight.T + bias)`, one per row, chunk by chunk. Unlike the
    summed loss above, the caller weights each row (per-sequence sums feed DPO's non-linear losses), so the backward
    recomputes each chunk's logits from the saved hidden rows instead of keeping them: no `(rows, vocabulary)` tensor
    outlives a chunk in either pass."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: Optional[torch.Tensor],
        targets: torch.Tensor,
        rows_per_chunk: int,
    ) -> torch.Tensor:
        out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], rows_per_chunk):
            end = start + rows_per_chunk
            logits = F.linear(hidden[start:end], weight, bias).float()
            out[start:end] = logits.gather(1, targets[start:end, None]).squeeze(1) - torch.logsumexp(logits, dim=-1)
        ctx.save_for_backward(hidden, weight, bias, targets)
        ctx.rows_per_chunk = rows_per_chunk
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple:
        hidden, weight, bias, targets = ctx.saved_tensors
        grad_h, grad_w, grad_b = _grad_buffers(ctx.needs_input_grad, hidden, weight, bias)
        w = weight.to(hidden.dtype) if grad_h is not None else None
        step = ctx.rows_per_chunk
        for start in range(0, hidden.shape[0], step):
            h, t, g = hidden[start : start + step], targets[start : start + step], grad_out[start : start + step].float()
            probs = torch.softmax(F.linear(h, weight, bias).float(), dim=-1)  # recomputed: d logp / d logits = onehot - p
            grads = probs.mul_(-g[:, None])
            grads[torch.arange(len(t), device=t.device), t] += g
            _add_head_grads(grads, h, w, slice(start, start + step), grad_h, grad_w, grad_b)
        return (
            grad_h,
            None if grad_w is None else grad_w.to(weight.dtype),
            None if grad_b is None else grad_b.to(bias.dtype),
            None,
            None,
        )


def linear_token_logps(
    hidden: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probabilities of the supervised targets, their flat positions) for the output layer `(weight, bias)` over
    `hidden` (..., H); positions labelled IGNORE are skipped and never reach the output layer."""
    hidden, targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1).to(hidden.device)
    rows = (targets != IGNORE).nonzero().squeeze(1)
    rows_per_chunk = max(1, CHUNK_ELEMENTS // weight.shape[0])
    logps = _LinearTokenLogps.apply(hidden.index_select(0, rows), weight, bias, targets.index_select(0, rows), rows_per_chunk)
    return logps, rows


def plain_sequence_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The reference: per-row sums of the targets' log-softmax over fully materialised logits (IGNORE skipped)."""
    logps = logits.float().log_softmax(-1)
    mask = targets != IGNORE
    picked = logps.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1)


def sequence_logps(model: Any, inputs: dict[str, torch.Tensor], targets: torch.Tensor, chunked: bool = True) -> torch.Tensor:
    """Summed log-probability of each row's targets (batch, positions; IGNORE: not a target) under `model(**inputs)`:
    one value per row. Chunked through the output layer as `token_loss_sum` is, else the plain path."""
    head = split_head(model) if chunked else None
    if head is None:
        return plain_sequence_logps(model(**inputs, use_cache=False).logits, targets)
    out: dict[str, torch.Tensor] = {}

    def hook(module: torch.nn.Linear, args: tuple) -> tuple:
        hidden = args[0]
        out["logps"], out["rows"] = linear_token_logps(hidden, module.weight, module.bias, targets)
        return (hidden[..., :0, :], *args[1:])

    handle = head.register_forward_pre_hook(hook)
    try:
        model(**inputs, use_cache=False)
    finally:
        handle.remove()
    per_row = torch.zeros(targets.shape[0], dtype=torch.float32, device=out["logps"].device)
    return per_row.index_add(0, torch.div(out["rows"], targets.shape[-1], rounding_mode="floor"), out["logps"])
