"""`llmft serve backend=vllm`: hand a run over to vLLM's OpenAI-compatible server (GPUs, continuous batching) with
the same host, port, api_key and served model ids. A full (or merged LoRA) run is served from its checkpoint; LoRA
runs kept as adapters are served on their shared base with vLLM's LoRA support (`--enable-lora --lora-modules`)."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from llmft.errors import UserError

INSTALL = "pip install vllm"  # vLLM runs on Linux with a GPU


@dataclass(frozen=True)
class Served:
    """One run as vLLM serves it: its model id and checkpoint folder (an adapter folder or a whole model)."""

    name: str
    folder: Path

    @property
    def adapter(self) -> Optional[dict]:
        path = self.folder / "adapter_config.json"
        return json.loads(path.read_text()) if path.is_file() else None


def require_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise UserError(f"llmft serve backend=vllm needs vLLM, which is not installed: {INSTALL}")


def vllm_command(runs: list[Served], host: str, port: int, api_key: Optional[str], python: str = sys.executable) -> list[str]:
    """The argv that starts vLLM's OpenAI server on these runs: one whole checkpoint, or adapters on their one base."""
    adapters = [r for r in runs if r.adapter is not None]
    if adapters and len(adapters) != len(runs):
        raise UserError("backend=vllm serves either one whole checkpoint or LoRA adapters on one base, not both in one server")
    command = [python, "-m", "vllm.entrypoints.openai.api_server", "--host", host, "--port", str(port)]
    if api_key is not None:
        command += ["--api-key", api_key]
    if not adapters:
        if len(runs) != 1:
            raise UserError("backend=vllm serves several runs only as LoRA adapters on one base (finetune.merge=false)")
        return command + ["--model", str(runs[0].folder), "--served-model-name", runs[0].name]
    bases = {r.adapter["base_model_name_or_path"] for r in adapters}  # type: ignore[index]
    if len(bases) != 1:
        raise UserError(f"the adapters of one server need one base model; these runs have {sorted(bases)}")
    rank = max(int(r.adapter.get("r", 8)) for r in adapters)  # type: ignore[union-attr]
    command += [
        "--model",
        bases.pop(),
        "--enable-lora",
        "--max-lora-rank",
        str(_lora_rank(rank)),
        "--max-loras",
        str(len(adapters)),
        "--lora-modules",
        *(f"{r.name}={r.folder}" for r in adapters),
    ]
    template = adapters[0].folder / "chat_template.jinja"  # the runs' chat template (the base may have none)
    return command + (["--chat-template", str(template)] if template.is_file() else [])


def _lora_rank(rank: int) -> int:
    """vLLM takes --max-lora-rank from a fixed list: the smallest one that holds the adapters' rank."""
    return next(r for r in (8, 16, 32, 64, 128, 256, 320, 512) if r >= rank) if rank <= 512 else rank
