"""The schema of `llmft data`: a train config (the same task, model and data options) plus what the report shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmft.config import ConfigError, TrainConfig


@dataclass
class DataReportConfig(TrainConfig):
    rows: int = 5  # rows rendered as training sees them
    split: str = "train"  # which split's rows are rendered: train, eval or test (every split is counted and checked)
    output: Optional[str] = None  # a folder for report.json and report.html; None: the console only
    min_chars: int = 3  # a text shorter than this (after folding spaces) is reported as too short
    near_duplicate_threshold: float = 0.8  # MinHash Jaccard estimate from which two rows count as near duplicates
    color: Optional[bool] = None  # highlight supervised tokens with colour; None: on a terminal, else [[brackets]]

    def __post_init__(self) -> None:
        if self.rows < 0 or self.min_chars < 0:
            raise ConfigError("rows and min_chars must be >= 0")
        if not 0.0 < self.near_duplicate_threshold <= 1.0:
            raise ConfigError(f"near_duplicate_threshold must be in (0, 1], got {self.near_duplicate_threshold}")
        if self.split not in ("train", "eval", "test"):
            raise ConfigError(f"split={self.split}: choose train, eval or test")
