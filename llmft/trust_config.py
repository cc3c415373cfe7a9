"""Schemas of the robustness and privacy options: adversarial training (finetune.adversarial*), DP-SGD (privacy.*)
and the attack `llmft eval` scores under (attack=...). Imported by config.py, which holds the verbs' schemas."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Optional

from llmft.config_types import ConfigError


class Adversarial(str, Enum):
    fgm = "fgm"  # one step along the normalised gradient, of length epsilon (Miyato et al. 2017)
    pgd = "pgd"  # adversarial_steps projected ascent steps inside the epsilon ball (Madry et al. 2018)


class AttackKind(str, Enum):
    charnoise = "charnoise"  # each letter swapped with the next, deleted, or preceded by a random letter, with probability rate
    synonym = "synonym"  # each word in the bundled synonym list replaced by one of its synonyms, with probability rate


def check_adversarial(epsilon: float, steps: int, alpha: Optional[float]) -> None:
    """The finetune.adversarial_* values (FinetuneConfig's cross-field check)."""
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ConfigError(f"finetune.adversarial_epsilon must be a finite number > 0, got {epsilon}")
    if steps < 1:
        raise ConfigError(f"finetune.adversarial_steps must be >= 1, got {steps}")
    if alpha is not None and not alpha > 0:
        raise ConfigError(f"finetune.adversarial_alpha must be > 0, got {alpha}")


@dataclass
class PrivacyConfig:
    """DP-SGD (Opacus): per-sample gradients clipped to max_grad_norm, Gaussian noise sized so the whole run spends at
    most `epsilon` at `delta`."""

    epsilon: Optional[float] = None  # the privacy budget of the run; None: off
    delta: float = 1e-5  # should be below 1 / training rows
    max_grad_norm: float = 1.0  # each example's gradient is clipped to this L2 norm

    @property
    def enabled(self) -> bool:
        return self.epsilon is not None

    def __post_init__(self) -> None:
        if self.epsilon is not None and not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ConfigError(f"privacy.epsilon must be a finite number > 0, got {self.epsilon}")
        if not 0 < self.delta < 1:
            raise ConfigError(f"privacy.delta must be in (0, 1), got {self.delta}")
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise ConfigError(f"privacy.max_grad_norm must be a finite number > 0, got {self.max_grad_norm}")


@dataclass
class AttackConfig:
    """A seeded perturbation of the scored texts: the same seed, rate and rows give the same texts."""

    kind: AttackKind = AttackKind.charnoise
    rate: float = 0.1  # charnoise: per letter; synonym: per word that has synonyms
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.rate <= 1:
            raise ConfigError(f"attack.rate must be in (0, 1], got {self.rate}")
