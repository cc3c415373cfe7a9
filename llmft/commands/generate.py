"""`llmft generate run=<folder> prompt="..." | input=<file.jsonl> [output=<file.jsonl>]`: predict with a checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from llmft.commands.common import checkpoint_dir, load_run_config, quiet_libraries, to_typed
from llmft.config import GenerateConfig, TrainConfig
from llmft.errors import UserError


def read_jsonl(path: Path, columns: list[str]) -> list[dict[str, Any]]:
    """Rows of a JSONL file; each must carry the task's text column(s) (or `text` for one column)."""
    if not path.is_file():
        raise UserError(f"input file not found: {path}")
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as ex:
        raise UserError(f"input file {path} is not UTF-8 text: {ex}") from ex
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as ex:
            raise UserError(f"{path}:{number} is not a JSON object: {ex.msg}") from ex
        if not isinstance(row, dict):
            raise UserError(f"{path}:{number} is not a JSON object")
        if len(columns) == 1 and columns[0] not in row and "text" in row:
            row[columns[0]] = row["text"]
        missing = [c for c in columns if not isinstance(row.get(c), str)]
        if missing:
            raise UserError(f"{path}:{number} has no text field '{missing[0]}' (the run's task.data.text_columns: {columns})")
        rows.append(row)
    if not rows:
        raise UserError(f"input file {path} has no rows")
    return rows


def generate_command(cfg: DictConfig) -> None:
    from llmft import backbone
    from llmft.precision import resolve_device
    from llmft.tasks import get_task
    from llmft.tasks.classification import predict

    config = to_typed(cfg, GenerateConfig)
    run_dir = Path(config.run)
    saved = load_run_config(run_dir, TrainConfig)
    columns = list(saved.task.data.text_columns)
    if config.prompt is not None:
        if len(columns) != 1:
            raise UserError(f"this run classifies sentence pairs {columns}; pass them as input=<file.jsonl>")
        rows = [{columns[0]: config.prompt}]
    else:
        rows = read_jsonl(Path(config.input), columns)  # type: ignore[arg-type]

    quiet_libraries()
    folder = checkpoint_dir(run_dir, config.checkpoint)
    task = get_task(saved.task)
    device = resolve_device(config.device)
    model = backbone.load_finetuned(task.auto_class_name, folder).to(device)
    tokenizer = backbone.load_finetuned_tokenizer(folder)
    texts = [[row[c] for c in columns] for row in rows]
    predictions = predict(model, tokenizer, texts, config.batch_size, saved.model.max_length, device)
    results = [{**row, **pred} for row, pred in zip(rows, predictions)]

    if config.output:
        out = Path(config.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(r) + "\n" for r in results), encoding="utf-8")
        print(f"wrote {len(results)} predictions to {out}", file=sys.stderr)
    else:
        for r in results:
            print(json.dumps(r))
