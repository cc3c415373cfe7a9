"""Token attributions by Integrated Gradients (Sundararajan et al., 2017) on the input word embeddings, with captum:
the baseline is the same input with every non-special token replaced by the pad token; position and segment
embeddings are the same for both, so the attributions (summed over the embedding dimension) add up to the score's
difference between input and baseline (completeness), up to the integral's error that captum reports as the delta."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch


@dataclass
class Attribution:
    tokens: list[str]
    scores: list[float]  # one per token, summed over the embedding dimension
    target: str
    score: float  # the explained output (a logit, or the regression score) on the input
    baseline_score: float  # ... and on the baseline
    delta: float  # captum's convergence delta: sum(scores) - (score - baseline_score)


def _baseline(input_ids: torch.Tensor, tokenizer: Any, choice: Optional[int]) -> torch.Tensor:
    """Every non-special token replaced by the pad token (for multiple choice, in the explained choice's input only)."""
    rows = input_ids.view(-1, input_ids.shape[-1])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = rows.clone()
    for i, row in enumerate(rows):
        if choice is not None and i != choice:
            continue
        special = torch.tensor(
            tokenizer.get_special_tokens_mask(row.tolist(), already_has_special_tokens=True),
            dtype=torch.bool,
            device=input_ids.device,
        )
        out[i] = torch.where(special, row, torch.full_like(row, pad))
    return out.view_as(input_ids)


def integrated_gradients(
    model: Any, tokenizer: Any, encoding: dict[str, torch.Tensor], target: Any, steps: int = 50
) -> Attribution:
    """Attributions of the score `target` picks from the model's logits (one row's encoding) to each input token (for
    multiple choice, to the tokens of `target.choice`'s input)."""
    from captum.attr import LayerIntegratedGradients

    model.eval()
    extra = {k: v for k, v in encoding.items() if k != "input_ids"}

    def forward(input_ids: torch.Tensor) -> torch.Tensor:
        expanded = {k: v.expand(input_ids.shape[0], *v.shape[1:]).contiguous() for k, v in extra.items()}  # BERT views them
        return target.pick(model(input_ids=input_ids, **expanded).logits.float())

    ids = encoding["input_ids"]
    baseline = _baseline(ids, tokenizer, target.choice)
    ig = LayerIntegratedGradients(forward, model.get_input_embeddings())
    attributions = ig.attribute(ids, baselines=baseline, n_steps=steps, internal_batch_size=steps)  # delta: below
    with torch.no_grad():
        score, base = float(forward(ids)[0]), float(forward(baseline)[0])
    per_token = attributions.sum(dim=-1).reshape(-1, ids.shape[-1])
    row = ids.view(-1, ids.shape[-1])[target.choice or 0]
    kept = encoding["attention_mask"].view(-1, ids.shape[-1])[target.choice or 0].bool() if "attention_mask" in encoding else None
    scores = per_token[target.choice or 0]
    if kept is not None:  # a choice padded to the longest choice: its pads are no input
        row, scores = row[kept.to(row.device)], scores[kept.to(scores.device)]
    return Attribution(
        tokenizer.convert_ids_to_tokens(row.tolist()),
        scores.detach().cpu().tolist(),
        target.name,
        score,
        base,
        float(per_token.sum()) - (score - base),
    )  # captum's delta, over every choice's tokens
