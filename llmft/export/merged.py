"""A LoRA run's adapter folded into its base model: a plain Hugging Face folder that loads without peft."""

from __future__ import annotations

from pathlib import Path

from llmft.errors import UserError
from llmft.export.source import Source


def check_adapter(source: Source) -> None:
    """A checkpoint without an adapter is refused: it is a plain folder already (a full or freeze run, or LoRA with
    finetune.merge=true, merged at the end of training)."""
    if not source.is_adapter:
        raise UserError(
            f"format=merged folds a LoRA adapter into its base, and {source.folder} holds none (it is a plain "
            "Hugging Face folder already; only finetune=lora with finetune.merge=false keeps an adapter)"
        )


def write_merged(source: Source, out: Path) -> None:
    """Save the merged model and the tokenizer in `out`."""
    check_adapter(source)
    source.plain_model().save_pretrained(out, safe_serialization=True)
    source.tokenizer.save_pretrained(out)


def load_merged(out: Path, auto_class_name: str) -> object:
    """The merged folder as transformers alone loads it (what verification runs)."""
    import transformers

    return getattr(transformers, auto_class_name).from_pretrained(out).eval()
