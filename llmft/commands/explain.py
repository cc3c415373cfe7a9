"""`llmft explain run=<run> prompt="..." | input=rows.jsonl`: Integrated Gradients token attributions of the run's
prediction for each row (llmft/evaluation/attributions.py), printed as coloured text, and written as
explanations.html, attributions.png and attributions.jsonl. The family names the outputs (`ExplainsTokens`):
classification, regression, token classification (each predicted entity) and multiple choice (the chosen choice);
the others are refused in one line."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from llmft.commands.common import checkpoint_dir, hydra_output_dir, load_run_config, quiet_libraries, to_typed
from llmft.config import TrainConfig
from llmft.engine.precision import resolve_device
from llmft.errors import UserError
from llmft.evaluation.attributions import integrated_gradients
from llmft.explain_config import ExplainConfig
from llmft.reporting import explanations
from llmft.tasks import get_task
from llmft.tasks.base import ExplainsTokens
from llmft.tasks.open_checkpoint import open_checkpoint


def explain_command(cfg: DictConfig) -> None:
    config = to_typed(cfg, ExplainConfig)
    try:
        import captum  # noqa: F401
    except ImportError as ex:
        raise UserError('llmft explain needs captum: pip install "llmft[explain]"') from ex
    import torch

    quiet_libraries()
    run_dir = Path(config.run)
    saved = load_run_config(run_dir, TrainConfig)
    if not isinstance(get_task(saved.task), ExplainsTokens):  # the family states what it supports
        raise UserError(
            "llmft explain explains classification, regression, token classification and multiple choice runs; "
            f"task.family={saved.task.family} is not one"
        )
    device = resolve_device(config.device)
    opened = open_checkpoint(saved.task, checkpoint_dir(run_dir, config.checkpoint), saved.model.max_length)
    task, model, tokenizer = opened.task, opened.model.to(device), opened.tokenizer
    rows = task.explanation_rows(config.prompt, Path(config.input) if config.input else None)
    items = []
    for row in rows:
        enc = {k: v.to(device) for k, v in task.explanation_encoding(row).items()}
        with torch.no_grad():
            logits = model(**enc).logits.float()
        for target in task.explanation_targets(row, logits, config.target):
            items.append((row, integrated_gradients(model, tokenizer, enc, target, config.steps)))
    _write(items, Path(config.output_dir) if config.output_dir else hydra_output_dir(), explanations)


def _write(pairs: list[tuple[dict[str, Any], Any]], out: Path, explanations: Any) -> None:
    """Each (row, attribution): a row explained for several outputs (NER's entities) has a line per output."""
    out.mkdir(parents=True, exist_ok=True)
    items = [item for _, item in pairs]
    explanations.print_attributions(items)
    explanations.write_html(items, out / "explanations.html")
    explanations.write_heatmap(items, out / "attributions.png")
    with open(out / "attributions.jsonl", "w", encoding="utf-8") as f:
        for row, item in pairs:
            f.write(json.dumps({**row, **asdict(item)}) + "\n")
    print(f"wrote explanations.html, attributions.png and attributions.jsonl to {out}")
