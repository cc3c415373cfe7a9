"""Token attributions by Integrated Gradients (Sundararajan et al., 2017) on the input word embeddings, with captum:
the baseline is the same input with every non-special token replaced by the pad token; position and segment
embeddings are the same for both, so the attributions (summed over the embedding dimension) add up to the score's
difference between input and baseline (completeness), up to the integral's error that captum reports as the delta."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Attribution:
    tokens: list[str]
    scores: list[float]  # one per token, summed over the embedding dimension
    target: str
    score: float  # the explained output (a logit, or the regression score) on the input
    baseline_score: float  # ... and on the baseline
    delta: float  # captum's convergence delta: sum(scores) - (score - baseline_score)


def _baseline(input_ids: torch.Tensor, tokenizer: Any) -> torch.Tensor:
    special = torch.tensor(tokenizer.get_special_tokens_mask(input_ids[0].tolist(), already_has_special_tokens=True),
                           dtype=torch.bool, device=input_ids.device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return torch.where(special[None, :], input_ids, torch.full_like(input_ids, pad))


def integrated_gradients(model: Any, tokenizer: Any, encoding: dict[str, torch.Tensor], index: int, target: str,
                         steps: int = 50) -> Attribution:
    """Attributions of output `index` of the model's logits (one row's encoding) to each input token."""
    from captum.attr import LayerIntegratedGradients

    model.eval()
    extra = {k: v for k, v in encoding.items() if k != "input_ids"}

    def forward(input_ids: torch.Tensor) -> torch.Tensor:
        expanded = {k: v.expand(input_ids.shape[0], -1) for k, v in extra.items()}
        return model(input_ids=input_ids, **expanded).logits.float()[:, index]

    ids = encoding["input_ids"]
    baseline = _baseline(ids, tokenizer)
    ig = LayerIntegratedGradients(forward, model.get_input_embeddings())
    attributions, delta = ig.attribute(ids, baselines=baseline, n_steps=steps, return_convergence_delta=True,
                                       internal_batch_size=steps)
    with torch.no_grad():
        score, base = float(forward(ids)[0]), float(forward(baseline)[0])
    per_token = attributions.sum(dim=-1)[0].detach().cpu().tolist()
    return Attribution(tokenizer.convert_ids_to_tokens(ids[0].tolist()), per_token, target, score, base, float(delta[0]))
