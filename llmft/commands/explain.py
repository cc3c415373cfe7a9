"""`llmft explain run=<run> prompt="..." | input=rows.jsonl`: Integrated Gradients token attributions of the run's
prediction for each row (llmft/evaluation/attributions.py), printed as coloured text, and written as
explanations.html, attributions.png and attributions.jsonl. Families whose head gives one output per class or a
score (classification, regression) can be explained; the others are refused in one line."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from llmft.commands.common import checkpoint_dir, hydra_output_dir, load_run_config, quiet_libraries, to_typed
from llmft.config import TrainConfig
from llmft.data.jsonl_input import read_jsonl
from llmft.data.nested_fields import lookup
from llmft.engine.precision import resolve_device
from llmft.errors import UserError
from llmft.evaluation.attributions import integrated_gradients
from llmft.explain_config import ExplainConfig
from llmft.models import backbone
from llmft.reporting import explanations
from llmft.tasks import get_task
from llmft.tasks.base import ExplainsTokens


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
    task = get_task(saved.task)
    if not isinstance(task, ExplainsTokens):  # the family states what it supports
        raise UserError(f"llmft explain explains classification and regression runs; task.family={saved.task.family} is not one")
    folder = checkpoint_dir(run_dir, config.checkpoint)
    device = resolve_device(config.device)
    model = backbone.load_finetuned(task.auto_class_name, folder).to(device)
    tokenizer = backbone.load_finetuned_tokenizer(folder)
    task.from_checkpoint(model)
    columns = list(saved.task.data.text_columns)
    if config.prompt is not None and len(columns) != 1:
        raise UserError(f"this run reads sentence pairs {columns}; pass them as input=<file.jsonl>")
    rows = [{columns[0]: config.prompt}] if config.prompt is not None else read_jsonl(Path(config.input), columns)
    items = []
    for row in rows:
        enc = tokenizer(*[lookup(row, c) for c in columns], truncation=True, max_length=saved.model.max_length, return_tensors="pt")
        enc = {k: v.to(device) for k, v in enc.items()}
        with torch.no_grad():
            logits = model(**enc).logits.float()[0].tolist()
        index, name = task.explanation_target(logits, config.target)
        items.append(integrated_gradients(model, tokenizer, enc, index, name, config.steps))
    _write(items, rows, Path(config.output_dir) if config.output_dir else hydra_output_dir(), explanations)


def _write(items: list[Any], rows: list[dict[str, Any]], out: Path, explanations: Any) -> None:
    out.mkdir(parents=True, exist_ok=True)
    explanations.print_attributions(items)
    explanations.write_html(items, out / "explanations.html")
    explanations.write_heatmap(items, out / "attributions.png")
    with open(out / "attributions.jsonl", "w", encoding="utf-8") as f:
        for row, item in zip(rows, items):
            f.write(json.dumps({**row, **asdict(item)}) + "\n")
    print(f"wrote explanations.html, attributions.png and attributions.jsonl to {out}")
