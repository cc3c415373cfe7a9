"""The 4-bit NF4 base of QLoRA (bitsandbytes through transformers' quantization config)."""

from __future__ import annotations

from typing import Any

import torch

from llmft.errors import UserError


def four_bit_load_kwargs(device: torch.device) -> dict[str, Any]:
    """`from_pretrained` arguments that load the linear layers as 4-bit NF4 (double-quantized) on `device`, computing in
    bf16 on a GPU and fp32 on a CPU (CPUs without native bf16 run it ~16x slower)."""
    try:
        import bitsandbytes  # noqa: F401  (transformers checks for it too, with a longer message)
        from transformers import BitsAndBytesConfig
    except ImportError as ex:
        raise UserError('finetune=qlora needs bitsandbytes: pip install "llmft[qlora]"') from ex
    compute = torch.bfloat16 if device.type == "cuda" else torch.float32
    config = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute
    )
    return {"quantization_config": config, "dtype": compute, "device_map": {"": str(device)}}


def is_quantized(model: Any) -> bool:
    """Loaded with a quantization config: already on its device (`.to()` is refused for such models)."""
    return getattr(model, "hf_quantizer", None) is not None or bool(getattr(model, "is_loaded_in_4bit", False))


def prepare_for_adapters(model: Any, gradient_checkpointing: bool) -> Any:
    """peft's preparation of a quantized base: frozen, norms in fp32, input gradients for checkpointing."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=gradient_checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False}
    )
