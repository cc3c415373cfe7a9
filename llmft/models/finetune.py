"""How much of the backbone trains: full fine-tuning, frozen parts (embeddings, first N layers, all but
the head), or LoRA adapters through peft. Also the dropout override and gradient checkpointing."""

from __future__ import annotations

import logging
import warnings
from typing import Any, Optional

import torch

from llmft.config import FinetuneConfig, FinetuneMethod
from llmft.errors import UserError
from llmft.models.quantized import prepare_for_adapters

DROPOUT_FIELDS = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "classifier_dropout",
    "dropout",
    "attention_dropout",
    "activation_dropout",
    "hidden_dropout",
    "attn_pdrop",
    "resid_pdrop",
    "embd_pdrop",
    "seq_classif_dropout",
)


def dropout_overrides(config: Any, p: float) -> dict[str, float]:
    """The dropout fields this backbone's config has, all set to `p`."""
    fields = {name: p for name in DROPOUT_FIELDS if hasattr(config, name)}
    if not fields:
        raise UserError(f"model.dropout: the {type(config).__name__} has no dropout setting to override")
    return fields


def _layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The backbone's stack of transformer blocks: its longest ModuleList (encoder.layer, layers, h, ...)."""
    lists = [m for m in model.base_model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise UserError("finetune.freeze_layers: could not find the backbone's layer stack")
    return max(lists, key=len)


def _freeze(module: torch.nn.Module) -> None:
    for param in module.parameters():
        param.requires_grad_(False)


def apply_freezing(model: torch.nn.Module, cfg: FinetuneConfig) -> None:
    if cfg.head_only:
        _freeze(model.base_model)  # what stays trainable is the task head outside the backbone
        return
    if cfg.freeze_embeddings:
        embeddings = getattr(model.base_model, "embeddings", None) or model.get_input_embeddings()
        _freeze(embeddings)
    if cfg.freeze_layers:
        layers = _layers(model)
        if cfg.freeze_layers > len(layers):
            raise UserError(f"finetune.freeze_layers={cfg.freeze_layers} but the backbone has {len(layers)} layers")
        for layer in layers[: cfg.freeze_layers]:
            _freeze(layer)


def apply_lora(model: torch.nn.Module, cfg: FinetuneConfig, peft_task_type: str) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as ex:
        raise UserError("finetune=lora needs the peft package: pip install peft") from ex
    lora = LoraConfig(
        task_type=peft_task_type,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_target_modules) if cfg.lora_target_modules else None,
        use_dora=cfg.use_dora,
        use_rslora=cfg.use_rslora,
    )
    try:
        with warnings.catch_warnings():  # peft asks for transformers' old name; nothing a user can act on
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
            return get_peft_model(model, lora)
    except ValueError as ex:
        raise UserError(f"finetune=lora: {str(ex).splitlines()[0]}; set finetune.lora_target_modules=[...]") from ex


def _no_cache_note(record: logging.LogRecord) -> bool:
    """transformers says, once per run, that checkpointing turns off the KV cache in training: nothing to act on (the
    saved config keeps use_cache for generation)."""
    return "incompatible with gradient checkpointing" not in str(record.msg)


def apply_method(
    model: torch.nn.Module,
    cfg: FinetuneConfig,
    peft_task_type: str,
    gradient_checkpointing: bool,
    device: Optional[torch.device] = None,
) -> Any:
    """Apply the fine-tuning method; returns the model to train (a PeftModel for LoRA), on `device`."""
    if cfg.neftune_alpha:
        add_neftune(model, cfg.neftune_alpha)
    if cfg.method is FinetuneMethod.qlora:
        model = prepare_for_adapters(model, gradient_checkpointing)
        return apply_lora(model, cfg, peft_task_type)  # already on its device (loaded there)
    if gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise UserError(f"trainer.gradient_checkpointing: {type(model).__name__} does not support it")
        for name in ("transformers.utils.generic", "transformers.modeling_layers"):
            logging.getLogger(name).addFilter(_no_cache_note)  # a set: one filter however many runs
        # transformers 5 renamed the call (the old name warns); 4.x has only the old one
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.method is FinetuneMethod.freeze:
        apply_freezing(model, cfg)
    elif cfg.method is FinetuneMethod.lora:
        model = apply_lora(model, cfg, peft_task_type)
    if not any(p.requires_grad for p in model.parameters()):
        raise UserError("nothing left to train: the finetune settings froze every parameter")
    return model.to(device) if device is not None else model


def add_neftune(model: torch.nn.Module, alpha: float) -> None:
    """NEFTune: uniform noise of scale alpha / sqrt(tokens x width) on the input embeddings in training mode only
    (transformers' hook, as its Trainer applies it); generation and eval see clean embeddings."""
    from transformers.integrations.neftune import neftune_post_forward_hook

    embeddings = model.get_input_embeddings()
    if not isinstance(embeddings, torch.nn.Embedding):
        raise UserError(f"finetune.neftune_alpha: {type(model).__name__}'s input embeddings are not an Embedding layer")
    embeddings.neftune_noise_alpha = alpha
    embeddings.register_forward_hook(neftune_post_forward_hook)


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total
