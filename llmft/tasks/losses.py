"""Training losses as small components: each is one function from a head's outputs to per-item losses, registered
under the name a family's `task.loss` takes, so a new loss is a function here (and its name among the option's
choices), not an edit of a family. The preference pair losses are the same kind of registry
(`preference_losses.PAIR_LOSSES`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ClassLossArgs:
    """What a class-head loss may use besides logits and labels (classification's options, its class weights)."""

    weight: Optional[torch.Tensor] = None  # per-class weights (imbalanced data)
    label_smoothing: float = 0.0
    focal_gamma: float = 0.0


ClassLoss = Callable[[torch.Tensor, torch.Tensor, ClassLossArgs], torch.Tensor]  # (logits, labels, args) -> per example
CLASS_LOSSES: dict[str, ClassLoss] = {}


def class_loss(name: str) -> Callable[[ClassLoss], ClassLoss]:
    """Register a loss of a class head (logits (rows, classes), labels (rows,)) under `name` (a task.loss value)."""

    def register(fn: ClassLoss) -> ClassLoss:
        CLASS_LOSSES[name] = fn
        return fn

    return register


@class_loss("cross_entropy")
def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, args: ClassLossArgs) -> torch.Tensor:
    """Cross-entropy per example, with the class weights and label smoothing (torch's definitions)."""
    weight = args.weight.to(logits.device) if args.weight is not None else None
    return F.cross_entropy(logits, labels, weight=weight, label_smoothing=args.label_smoothing, reduction="none")


@class_loss("focal")
def focal(logits: torch.Tensor, labels: torch.Tensor, args: ClassLossArgs) -> torch.Tensor:
    """Focal loss (Lin et al. 2017): the cross-entropy above times (1 - p_true) ** focal_gamma."""
    p_true = torch.softmax(logits, dim=-1).gather(1, labels[:, None]).squeeze(1)
    return (1.0 - p_true) ** args.focal_gamma * cross_entropy(logits, labels, args)


EmbeddingLoss = Callable[[list[torch.Tensor], Optional[torch.Tensor], float], torch.Tensor]  # mean over the rows
EMBEDDING_LOSSES: dict[str, EmbeddingLoss] = {}


def embedding_loss(name: str) -> Callable[[EmbeddingLoss], EmbeddingLoss]:
    """Register a loss over sentence embeddings (columns of row embeddings, gold scores or None, scale) as `name`."""

    def register(fn: EmbeddingLoss) -> EmbeddingLoss:
        EMBEDDING_LOSSES[name] = fn
        return fn

    return register


@embedding_loss("mnrl")
def multiple_negatives_ranking(columns: list[torch.Tensor], scores: Optional[torch.Tensor], scale: float) -> torch.Tensor:
    """sentence-transformers' MultipleNegativesRankingLoss: (anchor, positive[, negatives]); the other rows' positives
    and every negative are each anchor's negatives."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    return MultipleNegativesRankingLoss(None, scale=scale).compute_loss_from_embeddings(columns, None)


@embedding_loss("cosent")
def cosent(columns: list[torch.Tensor], scores: Optional[torch.Tensor], scale: float) -> torch.Tensor:
    """sentence-transformers' CoSENTLoss: the order of the pairs' cosine similarities follows their gold scores."""
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss

    return CoSENTLoss(None, scale=scale).compute_loss_from_embeddings(columns, scores)
