"""The cross-field checks of finetune=distill's options (config.FinetuneConfig calls them)."""

from __future__ import annotations

import math
from typing import Any

from llmft.config_types import ConfigError, FinetuneMethod

DISTILL_ONLY = ("teacher", "cache_teacher", "augment")  # set with another finetune method: refused


def check_distill(tuning: Any) -> None:
    """finetune.teacher / temperature / alpha / hidden_weight / augment / augment_words, as finetune=distill reads them."""
    for name in DISTILL_ONLY:  # distill without a teacher: refused at setup
        if getattr(tuning, name) not in (None, False, 0) and tuning.method is not FinetuneMethod.distill:
            raise ConfigError(f"finetune.{name} is used by finetune=distill only (this is finetune={tuning.method.value})")
    if not (math.isfinite(tuning.temperature) and tuning.temperature > 0):
        raise ConfigError(f"finetune.temperature must be a finite number > 0, got {tuning.temperature}")
    if not 0.0 <= tuning.alpha <= 1.0:
        raise ConfigError(f"finetune.alpha must be in [0, 1] (the task loss's weight), got {tuning.alpha}")
    if not (math.isfinite(tuning.hidden_weight) and tuning.hidden_weight >= 0):
        raise ConfigError(f"finetune.hidden_weight must be a finite number >= 0, got {tuning.hidden_weight}")
    if tuning.augment < 0:
        raise ConfigError(f"finetune.augment must be >= 0 (swapped copies of each train row), got {tuning.augment}")
    if not 0.0 < tuning.augment_words <= 1.0:
        raise ConfigError(f"finetune.augment_words must be in (0, 1] (the share of words swapped), got {tuning.augment_words}")
