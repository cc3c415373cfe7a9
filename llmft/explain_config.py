"""The schema of `llmft explain` (cli.schemas gathers it with the others)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmft.config import ConfigError, Device


@dataclass
class ExplainConfig:
    run: str = "???"  # a train run folder (classification or regression)
    checkpoint: str = "best"
    prompt: Optional[str] = None  # one text
    input: Optional[str] = None  # or a JSONL file of rows with the run's text columns
    target: Optional[str] = None  # classification: the label to explain; None: each row's predicted label
    steps: int = 50  # Integrated Gradients' integration steps (Gauss-Legendre)
    output_dir: Optional[str] = None  # where explanations.html, attributions.png and attributions.jsonl go; None: the job folder
    device: Device = Device.auto

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.input is None):
            raise ConfigError('explain needs exactly one of prompt="..." or input=<file.jsonl>')
        if self.steps < 2:
            raise ConfigError(f"steps must be >= 2, got {self.steps}")
