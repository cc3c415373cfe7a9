"""README.md for a best checkpoint: what it is, how it was trained, on what data, how well it scores,
so the folder can be shared on a model hub as it is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def write_model_card(folder: Path, manifest: dict[str, Any], summary: dict[str, Any], pipeline_tag: str) -> Path:
    """README.md in `folder`; `pipeline_tag` is the task's (`task.pipeline_tag`: text-classification, ...)."""
    config = manifest.get("config", {})
    family = config.get("task", {}).get("family")
    front = {
        "library_name": "transformers",
        "pipeline_tag": pipeline_tag,
        "tags": ["llmft", "fine-tuned"],
        "base_model": config.get("model", {}).get("name_or_path"),
    }
    metrics = {k: v for k, v in summary.get("metrics", {}).items() if isinstance(v, (int, float))}
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# Fine-tuned {front['base_model']} ({family})",
        "",
        f"Trained with llmft {manifest.get('packages', {}).get('llmft', '')}; "
        f"best checkpoint at step {summary.get('best_step')} of {summary.get('steps')}, selected on eval "
        f"`{summary.get('select_metric')}` = {summary.get('select_value')}.",
        "",
        "## Test metrics",
        "",
        "| metric | value |",
        "|---|---:|",
        *[f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()],
        "",
        "## Data",
        "",
        f"Source: `{config.get('task', {}).get('data', {}).get('path')}`; fingerprints:",
        "",
        "```json",
        json.dumps(manifest.get("data_fingerprint", {}), indent=2),
        "```",
        "",
        "## Training config",
        "",
        "```yaml",
        yaml.safe_dump(config, sort_keys=False).strip(),
        "```",
        "",
        "## Reproduce",
        "",
        f"Seed {manifest.get('seed')}, code {manifest.get('git_sha') or 'release'}, packages:",
        "",
        "```json",
        json.dumps(manifest.get("packages", {}), indent=2),
        "```",
        "",
    ]
    path = folder / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
