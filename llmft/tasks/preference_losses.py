"""The pair losses of task=dpo, one small function each in a registry (task.loss picks one). Each takes the summed
completion log-probs of the policy (and of the reference, zeros for the reference-free ones) and the completion
lengths, and returns per-pair losses and the implicit rewards of chosen and rejected. Formulas as TRL computes them
(DPOTrainer, CPOTrainer for SimPO, ORPOTrainer), so a test compares them term by term."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from llmft.tasks.options import PreferenceLoss, PreferenceOptions


@dataclass
class PairLogps:
    """Per pair: summed completion log-probs of the policy and the reference, and completion lengths (tokens)."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    ref_chosen: torch.Tensor
    ref_rejected: torch.Tensor
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor

    def averaged(self) -> "PairLogps":
        """Length-normalised: each log-prob divided by its completion's tokens."""
        c, r = self.chosen_tokens.clamp(min=1), self.rejected_tokens.clamp(min=1)
        return PairLogps(
            self.chosen / c,
            self.rejected / r,
            self.ref_chosen / c,
            self.ref_rejected / r,
            self.chosen_tokens,
            self.rejected_tokens,
        )


Losses = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # per-pair loss, chosen reward, rejected reward


def _ratios(lp: PairLogps, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    chosen, rejected = lp.chosen - lp.ref_chosen, lp.rejected - lp.ref_rejected
    return chosen - rejected, beta * chosen.detach(), beta * rejected.detach()


def sigmoid_loss(lp: PairLogps, cfg: PreferenceOptions) -> Losses:
    margin, rc, rr = _ratios(lp, cfg.beta)
    return -F.logsigmoid(cfg.beta * margin), rc, rr


def ipo_loss(lp: PairLogps, cfg: PreferenceOptions) -> Losses:
    margin = _ratios(lp.averaged(), cfg.beta)[0]  # IPO's log-ratios are per token (TRL averages them)
    _, rc, rr = _ratios(lp, cfg.beta)  # the rewards stay the summed log-ratios (as TRL logs them)
    return (margin - 1 / (2 * cfg.beta)) ** 2, rc, rr


def hinge_loss(lp: PairLogps, cfg: PreferenceOptions) -> Losses:
    margin, rc, rr = _ratios(lp, cfg.beta)
    return torch.relu(1 - cfg.beta * margin), rc, rr


def simpo_loss(lp: PairLogps, cfg: PreferenceOptions) -> Losses:
    avg = lp.averaged()
    margin = avg.chosen - avg.rejected - cfg.simpo_gamma / cfg.beta
    return -F.logsigmoid(cfg.beta * margin), cfg.beta * avg.chosen.detach(), cfg.beta * avg.rejected.detach()


def orpo_loss(lp: PairLogps, cfg: PreferenceOptions) -> Losses:
    """ORPO: the chosen completion's NLL per token minus beta x log sigmoid(log odds ratio) (TRL's odds_ratio_loss on
    length-averaged log-probs); its NLL term is per pair here, so accumulation does not change it."""
    avg = lp.averaged()
    log_odds = (avg.chosen - avg.rejected) - (torch.log1p(-torch.exp(avg.chosen)) - torch.log1p(-torch.exp(avg.rejected)))
    return -avg.chosen - cfg.beta * F.logsigmoid(log_odds), cfg.beta * avg.chosen.detach(), cfg.beta * avg.rejected.detach()


PAIR_LOSSES: dict[PreferenceLoss, Callable[[PairLogps, PreferenceOptions], Losses]] = {
    PreferenceLoss.sigmoid: sigmoid_loss,
    PreferenceLoss.ipo: ipo_loss,
    PreferenceLoss.hinge: hinge_loss,
    PreferenceLoss.simpo: simpo_loss,
    PreferenceLoss.orpo: orpo_loss,
}


def pair_losses(lp: PairLogps, cfg: PreferenceOptions) -> Losses:
    """The configured loss per pair, plus `task.sft_weight` x the chosen NLL per token (RPO)."""
    losses, chosen, rejected = PAIR_LOSSES[cfg.loss](lp, cfg)
    if cfg.sft_weight:
        losses = losses - cfg.sft_weight * lp.chosen / lp.chosen_tokens.clamp(min=1)
    return losses, chosen, rejected
