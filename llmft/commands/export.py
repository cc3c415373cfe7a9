"""`llmft export run=<folder> format=onnx|merged|gguf [quantize=int8] [output=<folder>]`: a run's checkpoint in a
deployable format, verified against the checkpoint on the run's own test rows (exit 2 when it disagrees)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from llmft.commands.common import checkpoint_dir, load_run_config, quiet_libraries, to_typed
from llmft.config import TrainConfig
from llmft.data.scored_rows import scored_rows
from llmft.deploy_config import ExportConfig
from llmft.errors import UserError
from llmft.export.pipeline import check_output, check_supported, default_output, run_export
from llmft.export.source import load_source, test_batches
from llmft.reporting.console import console


def export_command(cfg: DictConfig) -> float:
    """Load the run's checkpoint and test rows, export, verify; returns the agreement."""
    config = to_typed(cfg, ExportConfig)
    run_dir = Path(config.run)
    saved = load_run_config(run_dir, TrainConfig)
    folder = checkpoint_dir(run_dir, config.checkpoint)
    out = Path(config.output) if config.output else default_output(run_dir, config)
    check_output(out)
    quiet_libraries()
    source = load_source(run_dir, saved, folder)
    check_supported(source, config)  # before the test rows are tokenized
    dataset, origin = scored_rows(run_dir, saved.task.data, saved.task.data, "test")
    rows = min(config.verify_rows, len(dataset))
    batches = test_batches(source, dataset, rows, config.batch_size)
    result = run_export(source, config, batches, rows, out)
    what = f"{config.format.value}{'' if config.quantize.value == 'none' else ' ' + config.quantize.value}"
    console.print(
        f"exported {folder} as {what} to {out}\nverified on {rows} test rows ({origin}): {result.line()}", highlight=False
    )
    if not result.passed:
        raise UserError(
            f"the {what} export disagrees with the checkpoint: {result.line()}; its files stay in {out} "
            "for inspection (min_agreement=<x> sets the bar)"
        )
    return result.agreement
