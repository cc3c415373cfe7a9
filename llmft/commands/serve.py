"""`llmft serve run=<folder>|runs=[a,b]|model=<option> [host=127.0.0.1] [port=8000] [api_key=...] [max_batch_size=8]
[batch_window_ms=10] [backend=torch|onnx|vllm] [export=<folder>]`: the run's checkpoint (or LoRA runs as adapters on
one base, or a model, or with backend=onnx the run's ONNX export) behind an OpenAI-compatible HTTP API
(llmft.serving); backend=vllm hands the run over to vLLM's OpenAI server."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from llmft import tasks
from llmft.commands.common import apply_user_overrides, checkpoint_dir, load_run_config, quiet_libraries, to_typed
from llmft.commands.open_run import load_predictor, saved_run_config
from llmft.config import TrainConfig
from llmft.deploy_config import ServeBackend, ServeConfig
from llmft.engine.precision import resolve_device
from llmft.errors import UserError
from llmft.serving.adapters import load_adapters
from llmft.serving.vllm_handover import Served, require_vllm, vllm_command
from llmft.tasks.base import Task


def serve_command(cfg: DictConfig) -> None:
    """Load like `llmft generate` (or the run's ONNX export with backend=onnx), then serve until Ctrl-C."""
    config = to_typed(cfg, ServeConfig)
    if config.backend is ServeBackend.vllm:
        return _hand_over(config)
    _check_extra(config.backend)
    from llmft.serving.app import build_app
    from llmft.serving.server import serve_forever

    quiet_libraries()
    served = _load_onnx(config, cfg) if config.backend is ServeBackend.onnx else _load_torch(config, cfg)
    app = build_app(served, config.api_key, config.max_batch_size, config.batch_window_ms)
    print(f"serving {served.name} ({served.task.pipeline_tag}) on http://{config.host}:{config.port}/v1", file=sys.stderr)
    serve_forever(app, config.host, config.port)


def _load_torch(config: ServeConfig, cfg: DictConfig) -> Any:
    served = load_served(config)
    return dataclasses.replace(served, generation=apply_user_overrides(served.generation, cfg, "generation"))


def load_served(config: ServeConfig) -> Any:
    """The run (or runs=[...] as adapters, or the model) loaded like `llmft generate`, with the model's generation_config
    over the run's generation settings (as vLLM takes its defaults)."""
    from llmft.serving.served_model import ServedModel, model_sampling_defaults

    first = config if not config.runs else ServeConfig(run=config.runs[0], checkpoint=config.checkpoint)
    task, model, tokenizer, max_length = load_predictor(first)
    adapters = _other_adapters(config, model, task) if config.runs else {}
    return ServedModel(
        served_name(first),
        task,
        model,
        tokenizer,
        max_length,
        resolve_device(config.device),
        model_sampling_defaults(task.cfg.generation, model),
        config.max_batch_size,
        adapters=adapters,
    )


def _other_adapters(config: ServeConfig, model: Any, task: Task) -> dict[str, str]:
    """runs=[a, b, ...]: b, ... loaded as adapters beside a's ({model id: adapter name})."""
    runs = [Path(r) for r in config.runs or []]
    others = {}
    for run in runs[1:]:
        other_task = tasks.get_task(load_run_config(run, TrainConfig).task)
        others[run_name(run)] = (checkpoint_dir(run, config.checkpoint), other_task)
    if len(set(others) | {run_name(runs[0])}) != len(runs):
        raise UserError(f"runs=[...] need distinct run names (their model ids): {[run_name(r) for r in runs]}")
    return load_adapters(model, task, checkpoint_dir(runs[0], config.checkpoint), others)


def _hand_over(config: ServeConfig) -> None:
    """backend=vllm: vLLM's OpenAI server in this process's place, on the run's checkpoint or the runs' adapters."""
    import os

    require_vllm()
    if config.run is None and not config.runs:
        raise UserError("backend=vllm serves runs: give run=<run folder> or runs=[...]")
    runs = [Path(r) for r in ([config.run] if config.run is not None else config.runs or [])]
    command = vllm_command(
        [Served(run_name(r), checkpoint_dir(r, config.checkpoint)) for r in runs], config.host, config.port, config.api_key
    )
    print("backend=vllm: " + " ".join(command), file=sys.stderr)
    os.execv(command[0], command)


def _load_onnx(config: ServeConfig, cfg: DictConfig) -> Any:
    from llmft.serving.onnx_model import export_folder, load_onnx_model

    run_dir = Path(config.run)  # type: ignore[arg-type]  # backend=onnx needs run= (ServeConfig checks)
    served = load_onnx_model(served_name(config), run_dir, saved_run_config(run_dir), config.export)
    print(f"backend=onnx: {export_folder(run_dir, config.export)} on onnxruntime (CPU)", file=sys.stderr)
    if served.generates:  # a decoder's export: the user's generation.* overrides apply as with backend=torch
        return dataclasses.replace(served, generation=apply_user_overrides(served.generation, cfg, "generation"))
    return served


def served_name(config: ServeConfig) -> str:
    """The id clients name in `model`: the run's run_name (else its folder's name), or the model option given."""
    if config.run is not None:
        return run_name(Path(config.run))
    from hydra.core.hydra_config import HydraConfig

    return str(HydraConfig.get().runtime.choices.get("model") or config.model.name_or_path)


def run_name(run: Path) -> str:
    """A run's model id: its run_name, else its folder's name."""
    return load_run_config(run, TrainConfig).run_name or run.resolve().name


def _check_extra(backend: ServeBackend) -> None:
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "prometheus_client") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f'llmft serve needs {", ".join(missing)}: pip install "llmft[serve]"')
    if backend is ServeBackend.onnx and importlib.util.find_spec("onnxruntime") is None:
        raise UserError('llmft serve backend=onnx needs onnxruntime: pip install "llmft[export]"')
