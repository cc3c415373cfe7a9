"""The embedding family's teacher term (finetune=distill): a bi-encoder's outputs are its similarities, so the student
learns the teacher's. For each (anchor, positive[, negatives]) row, its in-batch similarity distribution, the
candidates MultipleNegativesRankingLoss scores (every pair's positive and every negative, scale x cosine), softened by
the temperature: T^2 * D(teacher || student), as the class families compare class logits (in-batch distillation, as
in RocketQAv2 and TAS-B). For each scored pair (CoSENT), the squared error of its cosine to the teacher's (a score has
no distribution to soften, as in regression). Cosines do not depend on the width, so the teacher may be wider than
the student; they do depend on the batch's other rows, so there is no per-row cache.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llmft.engine.distill_loss import Distillation

PAIR, SCORED = 0, 1  # a row's kind in the embedding family's batches


def in_batch_similarities(embeddings: torch.Tensor, kind: torch.Tensor, scale: float) -> torch.Tensor:
    """(pair rows, candidates): scale * the cosine of each pair row's anchor to every pair row's positive, then to
    every negative of the batch. `embeddings`: the anchors, the positives, then the negatives (the collator's order)."""
    rows = int(kind.numel())
    pair = kind == PAIR
    anchors = embeddings[:rows][pair]
    candidates = torch.cat([embeddings[rows : 2 * rows][pair], embeddings[2 * rows :]])
    from sentence_transformers.util import cos_sim  # MultipleNegativesRankingLoss's own similarity

    return scale * cos_sim(anchors, candidates)


def scored_cosines(embeddings: torch.Tensor, kind: torch.Tensor) -> torch.Tensor:
    """The cosine of each scored row's two texts."""
    rows = int(kind.numel())
    scored = kind == SCORED
    return F.cosine_similarity(embeddings[:rows][scored], embeddings[rows : 2 * rows][scored], dim=-1)


def teacher_term_sum(
    ours: torch.Tensor, theirs: torch.Tensor, kind: torch.Tensor, scale: float, distillation: Distillation
) -> torch.Tensor:
    """The summed teacher term over a batch's rows: the divergence of each pair row's in-batch similarities, plus the
    squared error of each scored row's cosine."""
    total = ours.new_zeros(())
    if bool((kind == PAIR).any()):
        student, teacher = in_batch_similarities(ours, kind, scale), in_batch_similarities(theirs, kind, scale)
        total = total + distillation.divergence_sum(student, teacher)
    if bool((kind == SCORED).any()):
        total = total + ((scored_cosines(ours, kind) - scored_cosines(theirs, kind)) ** 2).sum()
    return total
