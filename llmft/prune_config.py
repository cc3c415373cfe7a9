"""The schema of `llmft prune` (cli.schemas gathers it with the others)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional

from llmft.config import ConfigError, Device


class PruneMethod(str, Enum):
    heads = "heads"  # structured: remove the least important attention heads (BERT-like encoders)
    layers = "layers"  # structured: drop the least important transformer blocks
    magnitude = "magnitude"  # unstructured: zero the smallest weights of the blocks' Linear layers (no speed-up)


class HeadImportance(str, Enum):
    gradient = "gradient"  # |d loss / d gate| of a gate on each head (Michel et al. 2019): one pass with gradients
    loss = "loss"  # the validation loss increase when the head alone is masked: one pass over the rows per head


@dataclass
class PruneConfig:
    run: str = "???"  # a train run folder
    checkpoint: str = "best"  # best | last | a folder
    method: PruneMethod = PruneMethod.heads
    amount: float = 0.3  # the fraction of heads or layers removed, or (magnitude) the sparsity reached
    split: str = "eval"  # the split that ranks heads/layers and is scored before and after (eval = the run's validation rows)
    rows: int = 256  # rows of the split that rank heads and layers (the metrics use the whole split)
    importance: HeadImportance = HeadImportance.gradient  # how method=heads ranks heads
    batch_size: int = 32
    output: Optional[str] = None  # the pruned run folder; default <run>/pruned-<method>-<amount>
    device: Device = Device.auto
    seed: int = 42

    def __post_init__(self) -> None:
        if not 0 < self.amount < 1:
            raise ConfigError(f"amount must be a fraction in (0, 1), got {self.amount}")
        if self.rows < 1 or self.batch_size < 1:
            raise ConfigError(f"rows and batch_size must be >= 1, got rows={self.rows} batch_size={self.batch_size}")
