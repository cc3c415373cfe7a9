"""`task.calibrate=true`: after training, fit a temperature for the best checkpoint on the validation split and save it
with the checkpoint (models/temperature.py), so test scoring and every later verb use the calibrated probabilities."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from llmft.commands.train_run import limited_batches
from llmft.config import TrainConfig
from llmft.evaluation import calibration
from llmft.models import backbone, temperature
from llmft.reporting.console import console
from llmft.tasks import get_task
from llmft.tasks.base import check_class_probabilities
from llmft.commands.setup import RunParts


def check_supported(config: TrainConfig) -> None:
    """task.calibrate=true on a family without class probabilities: one line, before any data or model is loaded."""
    check_class_probabilities(get_task(config.task), "task.calibrate=true")


def calibrate_best(config: TrainConfig, best_dir: Path, parts: RunParts, dist: Any) -> None:
    """Score the validation split with the best checkpoint (uncalibrated), fit T, write calibration.json (rank 0)."""
    stale = best_dir / temperature.CALIBRATION_FILE
    if dist.main and stale.is_file():
        stale.unlink()  # a resumed run's earlier fit: score the checkpoint as trained
    dist.barrier()
    model = backbone.load_finetuned(parts.task.auto_class_name, best_dir).to(parts.precision.device)
    batches = limited_batches(parts.eval_loader, config.trainer.limit_eval_batches, "calibrate", config.trainer.progress)
    partials = dist.gather(parts.task.eval_partial(model, batches, parts.precision, "eval", dist))
    del model
    gc.collect()
    if dist.main:
        labels, probs = parts.task.class_probabilities(partials)
        record = fit_record(labels, probs)
        temperature.write(best_dir, record)
        console.print(
            f"calibration on {record['rows']} validation rows: temperature {record['temperature']:.3f}, NLL "
            f"{record['nll_before']:.4f} -> {record['nll_after']:.4f}, ECE {record['ece_before']:.4f} -> "
            f"{record['ece_after']:.4f}",
            highlight=False,
        )
    dist.barrier()  # the file is written before any rank loads the checkpoint for test


def fit_record(labels: Any, probs: Any) -> dict[str, Any]:
    """The fitted temperature and the validation NLL and ECE before and after it."""
    t = calibration.fit_temperature(labels, probs)
    return {
        "temperature": t,
        "fitted_on": "validation",
        "rows": int(len(labels)),
        "nll_before": calibration.nll(labels, probs, 1.0),
        "nll_after": calibration.nll(labels, probs, t),
        "ece_before": calibration.expected_calibration_error(labels, probs),
        "ece_after": calibration.expected_calibration_error(labels, calibration.scaled(probs, t)),
        "ece_bins": calibration.ECE_BINS,
    }
