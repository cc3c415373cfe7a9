"""`llmft prune run=<run> method=heads|layers|magnitude amount=<fraction>`: a smaller model from a finished run. Heads and
layers are ranked on the validation rows by how much the loss rises without them (llmft/engine/importance.py) and the
least important removed; magnitude zeroes the smallest weights of the blocks' Linear layers. The output is a run folder
(the run's config and held-out splits, checkpoints/best, prune.json) that `llmft eval`, `llmft export` and
`llmft train model.name_or_path=<output>/checkpoints/best` take like any run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import DictConfig

from llmft.commands.common import checkpoint_dir, load_run_config, quiet_libraries, to_typed
from llmft.config import PrecisionMode, TrainConfig
from llmft.data import loading as data
from llmft.data import scored_rows
from llmft.engine import importance
from llmft.engine.distributed import Dist
from llmft.engine.evaluation import gathered_metrics
from llmft.engine.precision import resolve_device, resolve_precision
from llmft.errors import UserError
from llmft.models import heads, sparsity, student
from llmft.prune_config import HeadImportance, PruneConfig, PruneMethod
from llmft.reporting.console import console, scalar_metrics
from llmft.runs.checkpoint import save_model
from llmft.runs.run_folder import RunFolder
from llmft.tasks.base import Task
from llmft.tasks.open_checkpoint import open_checkpoint

PRUNE_JSON = "prune.json"
SPEED_NOTE = (
    "unstructured zeros keep every matrix its size: dense matmuls on CPU and GPU do the same work, so this model is "
    "no faster and (uncompressed) no smaller; method=heads or method=layers removes work"
)


def prune_command(cfg: DictConfig) -> None:
    """Open the run, score it, prune, score again, write the pruned run folder."""
    config = to_typed(cfg, PruneConfig)
    run_dir = Path(config.run)
    saved = load_run_config(run_dir, TrainConfig)
    folder = checkpoint_dir(run_dir, config.checkpoint)
    out = Path(config.output) if config.output else run_dir / f"pruned-{config.method.value}-{config.amount:g}"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"output={out} exists and is not empty; name a new folder (output=<folder>)")
    if (folder / "adapter_config.json").is_file():
        raise UserError(f"{folder} is a LoRA adapter; prune a merged checkpoint (train with finetune.merge=true)")
    quiet_libraries()
    torch.manual_seed(config.seed)
    opened = open_checkpoint(saved.task, folder, saved.model.max_length)
    task, model, tokenizer = opened.task, opened.model, opened.tokenizer
    if config.method is PruneMethod.heads:
        heads.attention_heads(model)  # refuse an architecture without removable heads before any scoring
    device = resolve_device(config.device)
    model.to(device)
    role = scored_rows.role(config.split, saved.task.data)
    dataset, origin = scored_rows.scored_rows(run_dir, saved.task.data, saved.task.data, role)
    features = task.prepare({role: dataset})[role]
    ranked = features.select(range(min(config.rows, len(features))))
    console.print(
        f"llmft prune ranks on {len(ranked)} and scores {len(features)} {config.split} rows ({origin})", highlight=False
    )
    score = _scorer(task, features, tokenizer, config, role, device)
    before = score(model)
    report = PRUNERS[config.method](task, model, _batches(task, ranked, tokenizer, config, device), config)
    report.update(run=str(run_dir), checkpoint=str(folder), method=config.method.value, amount=config.amount, split=config.split)
    report.update(rows_ranked=len(ranked), rows_scored=len(features), before=before, after=score(model))
    _write_run(out, run_dir, model, tokenizer, task, report)
    _print(report, saved.task.select_metric, out)


def _batches(task: Task, features: Any, tokenizer: Any, config: PruneConfig, device: torch.device) -> list[dict[str, Any]]:
    loader = data.make_loader(features, config.batch_size, task.collator(tokenizer), False, config.seed)
    return [{k: v.to(device) for k, v in batch.items()} for batch in loader]


def _scorer(
    task: Task, features: Any, tokenizer: Any, config: PruneConfig, role: str, device: torch.device
) -> Callable[[Any], dict[str, Any]]:
    """The model's metrics on the whole split (as `llmft eval` scores it) and its parameter count."""
    precision = resolve_precision(PrecisionMode.auto, device)

    def score(model: Any) -> dict[str, Any]:
        loader = data.make_loader(features, config.batch_size, task.collator(tokenizer), False, config.seed)
        metrics = scalar_metrics(gathered_metrics(task, model, loader, precision, role, Dist()))
        return {"parameters": sum(p.numel() for p in model.parameters()), "metrics": metrics}

    return score


def _prune_heads(task: Task, model: Any, batches: list[dict[str, Any]], config: PruneConfig) -> dict[str, Any]:
    """Rank the heads, cut the least important `amount` of them out of every layer's attention."""
    rank = importance.head_gradient if config.importance is HeadImportance.gradient else importance.head_loss_increase
    scores = rank(task, model, batches)
    total = sum(len(row) for row in scores)
    how_many = round(config.amount * total)
    if not 1 <= how_many <= total - len(scores):
        raise UserError(
            f"amount={config.amount} of {total} heads removes {how_many}; choose an amount that removes 1 to "
            f"{total - len(scores)} (each of the {len(scores)} layers keeps a head)"
        )
    chosen = importance.least_important_heads(scores, how_many)
    originals = {i: heads.original_indices(model.config, i, model.config.num_attention_heads) for i in range(len(scores))}
    heads.remove_heads(model, chosen)
    return {
        "importance": config.importance.value,
        "scores": {str(i): dict(zip(map(str, originals[i]), row)) for i, row in enumerate(scores)},
        "removed": {str(i): [originals[i][h] for h in hs] for i, hs in chosen.items()},
        "heads_before": total,
        "heads_after": total - how_many,
        "pruned_heads": model.config.pruned_heads,
    }


def _prune_layers(task: Task, model: Any, batches: list[dict[str, Any]], config: PruneConfig) -> dict[str, Any]:
    """Rank the blocks by the loss rise when each is skipped, keep all but the least important `amount` of them."""
    scores = importance.layer_loss_increase(task, model, batches)
    how_many = round(config.amount * len(scores))
    if not 1 <= how_many < len(scores):
        raise UserError(
            f"amount={config.amount} of {len(scores)} layers removes {how_many}; choose an amount that removes 1 to {len(scores) - 1}"
        )
    dropped = sorted(sorted(range(len(scores)), key=lambda i: scores[i])[:how_many])
    kept = student.shrink(model, [i for i in range(len(scores)) if i not in dropped], None)
    return {"scores": {str(i): s for i, s in enumerate(scores)}, "removed": dropped, "kept": kept}


def _prune_magnitude(task: Task, model: Any, batches: list[dict[str, Any]], config: PruneConfig) -> dict[str, Any]:
    """Zero the smallest `amount` of the blocks' Linear weights (ranked together) and report the sparsity reached."""
    sparsity.prune_magnitude(model, config.amount)
    return {"sparsity": sparsity.sparsity(model), "note": SPEED_NOTE}


PRUNERS: dict[PruneMethod, Callable[[Any, Any, list[dict[str, Any]], PruneConfig], dict[str, Any]]] = {
    PruneMethod.heads: _prune_heads,
    PruneMethod.layers: _prune_layers,
    PruneMethod.magnitude: _prune_magnitude,
}


def _write_run(out: Path, run_dir: Path, model: Any, tokenizer: Any, task: Task, report: dict[str, Any]) -> None:
    """A run folder of the pruned model: the source run's config and held-out splits (so `llmft eval` scores the same
    rows), checkpoints/best, and prune.json."""
    source, target = RunFolder(run_dir), RunFolder(out)
    target.saved_config.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source.saved_config, target.saved_config)
    if source.splits.is_file():
        shutil.copyfile(source.splits, target.splits)
    save_model(target.best, model.cpu(), tokenizer, extra_files=task.checkpoint_files)
    (out / PRUNE_JSON).write_text(json.dumps(report, indent=2) + "\n")


def _print(report: dict[str, Any], metric: str, out: Path) -> None:
    before, after = report["before"], report["after"]
    what = {
        "heads": lambda: (
            f"removed {report['heads_before'] - report['heads_after']} of {report['heads_before']} heads: {report['removed']}"
        ),
        "layers": lambda: f"removed layers {report['removed']}, kept {report['kept']}",
        "magnitude": lambda: (
            f"sparsity of the blocks' Linear weights {report['sparsity']['block_linears']:.3f} "
            f"({report['sparsity']['all_parameters']:.3f} of all parameters)"
        ),
    }[report["method"]]()
    console.print(what, highlight=False)
    console.print(
        f"parameters {before['parameters']:,} -> {after['parameters']:,}; {report['split']} {metric} "
        f"{before['metrics'].get(metric, float('nan')):.4f} -> {after['metrics'].get(metric, float('nan')):.4f}, "
        f"loss {before['metrics'].get('loss', float('nan')):.4f} -> {after['metrics'].get('loss', float('nan')):.4f}",
        highlight=False,
    )
    if report["method"] == "magnitude":
        console.print(f"note: {SPEED_NOTE}", highlight=False)
    console.print(f"wrote the pruned run to {out} ({PRUNE_JSON}, checkpoints/best)", highlight=False)
