"""`llmft generate run=<folder>|model=<option> prompt="..." | input=<file.jsonl> [output=<file.jsonl>]`:
class probabilities for a classifier; generated text (streamed for one prompt) for a generative model."""

from __future__ import annotations

import json
import os
import string
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from llmft.commands.common import apply_user_overrides, checkpoint_dir, load_run_config, quiet_libraries, to_typed
from llmft.config import GenerateConfig, TaskConfig, TaskFamily, TrainConfig
from llmft.errors import UserError
from llmft.data.nested_fields import lookup


def read_jsonl(path: Path, columns: list[str]) -> list[dict[str, Any]]:
    """Rows of a JSONL file; each must carry `columns` (a single column may also come as `text`)."""
    if not path.is_file():
        raise UserError(f"input file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as ex:
        raise UserError(f"input file {path} is not UTF-8 text: {ex}") from ex
    rows = []
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
        missing = [c for c in columns if not isinstance(_field(row, c), str)]
        if missing:
            raise UserError(f"{path}:{number} has no text field '{missing[0]}' (needed: {columns})")
        rows.append(row)
    if not rows:
        raise UserError(f"input file {path} has no rows")
    return rows


def _field(row: dict[str, Any], path: str) -> Any:
    """A row's column or nested field (dotted path), or None."""
    try:
        return lookup(row, path)
    except UserError:
        return None


def check_output(path: Path) -> None:
    """`output=` must name a file that can be written; checked before any model is loaded."""
    if path.is_dir():
        raise UserError(f"output={path} is a folder; name a file, e.g. output={path / 'predictions.jsonl'}")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as ex:
        raise UserError(f"cannot write output={path}: cannot create its folder {parent} ({ex.strerror})") from ex
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"cannot write output={path}: permission denied")


def _template_fields(template: str | None) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template or "") if f]


def generate_command(cfg: DictConfig) -> None:
    from llmft.models import backbone
    from llmft.engine.precision import resolve_device
    from llmft.tasks import get_task

    config = to_typed(cfg, GenerateConfig)
    if config.output:
        check_output(Path(config.output))
    quiet_libraries()
    device = resolve_device(config.device)
    if config.run is not None:
        run_dir = Path(config.run)
        saved = load_run_config(run_dir, TrainConfig)
        task_cfg, max_length = saved.task, saved.model.max_length
        folder = checkpoint_dir(run_dir, config.checkpoint)
        task = get_task(task_cfg)
        model = backbone.load_finetuned(task.auto_class_name, folder)
        tokenizer = backbone.load_finetuned_tokenizer(folder)
    else:
        task_cfg = TaskConfig(family=TaskFamily.causal_lm, prompt_template="{prompt}", response_column="prompt")
        max_length = config.model.max_length
        task = get_task(task_cfg)
        tokenizer_source, weights = backbone.resolve(config.model)
        tokenizer = backbone.load_tokenizer(tokenizer_source, config.model)
        if weights is None:
            raise UserError(f"{config.model.name_or_path} is a random test model; generate with run=<run folder> or a pretrained model")
        model = task.build_model(weights, tokenizer, config.model)
    model = model.to(device)
    if task_cfg.family is TaskFamily.classification:
        results = _classify(config, task_cfg, model, tokenizer, max_length, device)
    elif task_cfg.family is TaskFamily.extractive_qa:
        if config.input is None:
            raise UserError("extractive QA reads question/context pairs: pass input=<file.jsonl> with 'question' and 'context' fields")
        rows = read_jsonl(Path(config.input), ["question", "context"])
        task.max_length = max_length
        results = [{**r, "answer": a} for r, a in zip(rows, task.predict(model, tokenizer, rows, config.batch_size, device))]
    else:
        results = _generate(config, task, task_cfg, model, tokenizer, max_length, device, cfg)
    if config.output:
        out = Path(config.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(r) + "\n" for r in results), encoding="utf-8")
        print(f"wrote {len(results)} results to {out}", file=sys.stderr)
    elif config.input or task_cfg.family in (TaskFamily.classification, TaskFamily.extractive_qa):
        for r in results:
            print(json.dumps(r))


def _classify(config: GenerateConfig, task_cfg: TaskConfig, model: Any, tokenizer: Any, max_length: int, device: Any) -> list[dict]:
    from llmft.tasks.classification import predict

    columns = list(task_cfg.data.text_columns)
    if config.prompt is not None:
        if len(columns) != 1:
            raise UserError(f"this run classifies sentence pairs {columns}; pass them as input=<file.jsonl>")
        rows = [{columns[0]: config.prompt}]
    else:
        rows = read_jsonl(Path(config.input), columns)  # type: ignore[arg-type]
    predictions = predict(model, tokenizer, [[lookup(row, c) for c in columns] for row in rows], config.batch_size, max_length, device,
                          task_cfg.input_truncation_side)
    return [{**row, **pred} for row, pred in zip(rows, predictions)]


def _generate(config: GenerateConfig, task: Any, task_cfg: TaskConfig, model: Any, tokenizer: Any, max_length: int,
              device: Any, cfg: DictConfig) -> list[dict]:
    """Prompts built like in training (template, chat template), generated in batches; one prompt streams."""
    from llmft.evaluation.generation import generate
    from llmft.tasks.text_common import Example, prompt_text

    task.tokenizer, task.max_length = tokenizer, max_length
    fields = _template_fields(task_cfg.prompt_template)
    if config.prompt is not None:
        rows = [{fields[0]: config.prompt} if len(fields) == 1 else {"prompt": config.prompt}]
        prompts = [prompt_text(rows[0], task_cfg) if len(fields) == 1 else config.prompt]
    else:
        rows = read_jsonl(Path(config.input), fields or [task_cfg.data.text_columns[0]])  # type: ignore[arg-type]
        prompts = [prompt_text(r, task_cfg) if fields else lookup(r, task_cfg.data.text_columns[0]) for r in rows]
    texts = [task.generation_prompt(Example(p, "")) for p in prompts]
    gen_cfg = apply_user_overrides(task_cfg.generation, cfg, "generation")
    streamer = None
    if config.prompt is not None and not config.output:
        from transformers import TextStreamer

        streamer = TextStreamer(tokenizer, skip_prompt=not model.config.is_encoder_decoder, skip_special_tokens=True)
    outputs = generate(model, tokenizer, texts, gen_cfg, device, max_length, streamer=streamer,
                       add_special_tokens=not getattr(task, "prompt_has_special_tokens", False),
                       truncation_side=task_cfg.input_truncation_side)  # cut as training cut
    return [{**row, "generation": out} for row, out in zip(rows, outputs)]
