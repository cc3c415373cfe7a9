"""Tokenizer and pretrained backbone for a task head, from a hub id, a local folder or a builtin model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmft.config import ModelConfig
from llmft.errors import UserError

BUILTIN_PREFIX = "builtin:"


def _builtin(name: str) -> tuple[str, str | None]:
    from llmft.builtin_models import BUILTIN_MODELS

    key = name[len(BUILTIN_PREFIX):]
    if key not in BUILTIN_MODELS:
        from llmft.errors import closest

        raise UserError(f"unknown builtin model '{name}'{closest(key, BUILTIN_MODELS)}; builtins: {', '.join(BUILTIN_MODELS)}")
    tokenizer_fn, weights_fn = BUILTIN_MODELS[key]
    return tokenizer_fn(), (weights_fn() if weights_fn else None)


def is_random(cfg: ModelConfig) -> bool:
    """A builtin test model built from a config (no pretrained weights to reload an adapter onto)."""
    from llmft.builtin_models import BUILTIN_MODELS

    key = cfg.name_or_path[len(BUILTIN_PREFIX):]
    return cfg.name_or_path.startswith(BUILTIN_PREFIX) and key in BUILTIN_MODELS and BUILTIN_MODELS[key][1] is None


def resolve(cfg: ModelConfig) -> tuple[str, str | None]:
    """(tokenizer source, weights source or None) for a model config."""
    if cfg.name_or_path.startswith(BUILTIN_PREFIX):
        tok, weights = _builtin(cfg.name_or_path)
    else:
        _check_local(cfg.name_or_path)
        tok, weights = cfg.name_or_path, cfg.name_or_path
    if cfg.tokenizer:
        tok = _builtin(cfg.tokenizer)[0] if cfg.tokenizer.startswith(BUILTIN_PREFIX) else cfg.tokenizer
    return tok, weights


def _check_local(name: str) -> None:
    """A value that looks like a path must be an existing model folder."""
    looks_local = name.startswith((".", "/", "~")) or Path(name).exists()
    if not looks_local:
        return
    path = Path(name).expanduser()
    if not path.is_dir():
        raise UserError(f"model folder not found: {name}")
    if not (path / "config.json").is_file():
        raise UserError(f"{name} is not a model folder (no config.json); point model.name_or_path at a save_pretrained folder")


def _load_error(what: str, source: str, ex: Exception) -> UserError:
    first = str(ex).strip().splitlines()[0] if str(ex).strip() else type(ex).__name__
    if "trust_remote_code" in str(ex):
        return UserError(f"{what} '{source}' needs custom code that is not part of transformers; if you trust its source, set model.trust_remote_code=true")
    return UserError(f"could not load {what} '{source}': {first} (a hub id needs the network, or a local folder)")


def load_tokenizer(source: str, cfg: ModelConfig) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as ex:
        raise _load_error("tokenizer", source, ex) from ex
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_model(auto_class: Any, weights: str | None, tokenizer: Any, cfg: ModelConfig, **head_kwargs: Any) -> Any:
    """A model with the task's head: pretrained weights when given, else a tiny random model (builtin)."""
    from llmft.finetune import dropout_overrides

    if weights is None:
        from llmft.builtin_models import tiny_config

        config = tiny_config(cfg.name_or_path[len(BUILTIN_PREFIX):], tokenizer)
        if cfg.dropout is not None:
            head_kwargs.update(dropout_overrides(config, cfg.dropout))
        for key, value in head_kwargs.items():
            setattr(config, key, value)
        return auto_class.from_config(config)
    try:
        if cfg.dropout is not None:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(weights, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
            head_kwargs.update(dropout_overrides(config, cfg.dropout))
        import torch

        # fp32 master weights whatever the checkpoint's dtype (transformers 5 loads a bf16 hub checkpoint as bf16):
        # autocast computes in bf16/fp16, the optimizer updates fp32 weights, and a GradScaler never meets fp16 grads
        return auto_class.from_pretrained(
            weights, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code, dtype=torch.float32, **head_kwargs
        )
    except ValueError as ex:
        if "Unrecognized configuration class" in str(ex):
            raise UserError(
                f"model '{weights}' has no {auto_class.__name__.replace('AutoModelFor', '')} head: "
                "pick a backbone that fits the task (e.g. an encoder like BERT for classification)"
            ) from ex
        raise _load_error("model", weights, ex) from ex
    except OSError as ex:
        raise _load_error("model", weights, ex) from ex


def load_finetuned(auto_class_name: str, folder: Path) -> Any:
    """A fine-tuned checkpoint folder (save_pretrained format) with its head; never runs remote code."""
    import transformers

    from llmft.checkpoint import check_weights

    folder = Path(folder)
    # a truncated or garbled weights file: one line naming it, not safetensors' traceback
    check_weights(folder, "restore it from a copy, or choose another checkpoint (checkpoint=best|last|<folder>)")
    if (folder / "adapter_config.json").is_file():
        return _load_adapter(getattr(transformers, auto_class_name), folder)
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder} is not a model checkpoint (no config.json)")
    try:
        return getattr(transformers, auto_class_name).from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError) as ex:
        raise _load_error("checkpoint", str(folder), ex) from ex


def _load_adapter(auto_class: Any, folder: Path) -> Any:
    """A LoRA adapter saved without merging: its base model (with the run's head config) plus the adapter."""
    import json

    from peft import PeftModel
    from transformers import AutoConfig

    base = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise UserError(f"adapter {folder} does not name its base model; it cannot be loaded on its own")
    config = AutoConfig.from_pretrained(folder) if (folder / "config.json").is_file() else None
    try:
        model = auto_class.from_pretrained(base, config=config, trust_remote_code=False)
    except (OSError, ValueError) as ex:
        raise _load_error("adapter base model", base, ex) from ex
    return PeftModel.from_pretrained(model, folder)


def load_finetuned_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError) as ex:
        raise _load_error("tokenizer", str(folder), ex) from ex
