"""A checkpoint's fitted temperature (`task.calibrate=true`): `calibration.json` beside its weights, read when the
checkpoint is loaded, so every verb that loads it (eval, generate, serve, export) gives probabilities from
softmax(logits / T). Plain transformers ignores the file and gives the uncalibrated logits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from llmft.errors import UserError

CALIBRATION_FILE = "calibration.json"


def write(folder: Path, record: dict[str, Any]) -> None:
    """Save the fitted temperature (and how it was fitted) with the checkpoint."""
    (Path(folder) / CALIBRATION_FILE).write_text(json.dumps(record, indent=2) + "\n")


def read(folder: Path) -> Optional[float]:
    """The temperature saved with a checkpoint, or None."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        return None

    try:
        temperature = float(json.loads(path.read_text())["temperature"])
    except (ValueError, KeyError, TypeError) as ex:
        raise UserError(f"{path} is not a calibration record (it needs a number 'temperature'): {ex}") from ex
    if not temperature > 0:
        raise UserError(f"{path}: temperature must be > 0, got {temperature}")
    return temperature


def attach(model: Any, folder: Path) -> Any:
    """Divide the model's output logits by the checkpoint's temperature, if it has one (a forward hook: the weights
    stay as trained)."""
    temperature = read(folder)
    if temperature is None or temperature == 1.0:
        return model

    def divide(module: Any, inputs: Any, output: Any) -> Any:
        if getattr(output, "logits", None) is not None:
            output["logits"] = output["logits"] / temperature
        return output

    model.register_forward_hook(divide)
    model.llmft_temperature = temperature
    return model
