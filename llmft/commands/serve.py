"""`llmft serve run=<folder>|model=<option> [host=127.0.0.1] [port=8000] [api_key=...] [max_batch_size=8]
[batch_window_ms=10]`: the run's checkpoint (or a model) behind an OpenAI-compatible HTTP API (llmft.serving)."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from llmft.commands.common import apply_user_overrides, load_run_config, quiet_libraries, to_typed
from llmft.config import ServeConfig, TrainConfig
from llmft.errors import UserError


def serve_command(cfg: DictConfig) -> None:
    """Load like `llmft generate`, then serve until Ctrl-C."""
    config = to_typed(cfg, ServeConfig)
    _check_extra()
    from llmft.commands.generate import load_predictor
    from llmft.engine.precision import resolve_device
    from llmft.serving.app import build_app
    from llmft.serving.server import serve_forever
    from llmft.serving.served_model import ServedModel

    quiet_libraries()
    task, model, tokenizer, max_length = load_predictor(config)
    served = ServedModel(served_name(config), task, model, tokenizer, max_length, resolve_device(config.device),
                         apply_user_overrides(task.cfg.generation, cfg, "generation"), config.max_batch_size)
    app = build_app(served, config.api_key, config.max_batch_size, config.batch_window_ms)
    print(f"serving {served.name} ({task.pipeline_tag}) on http://{config.host}:{config.port}/v1", file=sys.stderr)
    serve_forever(app, config.host, config.port)


def served_name(config: ServeConfig) -> str:
    """The id clients name in `model`: the run's run_name (else its folder's name), or the model option given."""
    if config.run is not None:
        return load_run_config(Path(config.run), TrainConfig).run_name or Path(config.run).resolve().name
    from hydra.core.hydra_config import HydraConfig

    return str(HydraConfig.get().runtime.choices.get("model") or config.model.name_or_path)


def _check_extra() -> None:
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "prometheus_client") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"llmft serve needs {', '.join(missing)}: pip install \"llmft[serve]\"")
