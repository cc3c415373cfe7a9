"""Models in a real architecture's shape with random weights, built from a config: no download, so they work on a
machine without network (the GPU machine). Each is a save_pretrained folder (config, fp32 weights, tokenizer) that
`model.name_or_path=<folder>` loads through llmft's ordinary path.

    python bench/gpu/shapes.py                  # every shape, full size, into $LLMFT_CACHE/shapes (prints the folders)
    python bench/gpu/shapes.py --tiny qwen2.5-0.5b   # the same architecture, a few layers wide: the CPU dry path

The tokenizers are trained locally on llmft's bundled data (a byte-level BPE for the decoder, a WordPiece for the
encoder); the model keeps the real vocabulary size, so embeddings and the LM head have their real cost.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

VERSION = "v1"  # bump when a shape or its tokenizer changes: cached folders are keyed by it


def qwen_config(tokenizer: Any, tiny: bool) -> Any:
    """Qwen2.5-0.5B (494M parameters, tied embeddings, grouped-query attention, 151936-token vocabulary)."""
    from transformers import Qwen2Config

    size = (
        dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=len(tokenizer),
        )
        if tiny
        else dict(
            hidden_size=896,
            intermediate_size=4864,
            num_hidden_layers=24,
            num_attention_heads=14,
            num_key_value_heads=2,
            vocab_size=151936,
        )
    )
    return Qwen2Config(
        **size,
        max_position_embeddings=32768,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        hidden_act="silu",
        use_sliding_window=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def bert_config(tokenizer: Any, tiny: bool) -> Any:
    """BERT-base uncased (110M parameters: 12 layers, hidden 768, 30522-token vocabulary)."""
    from transformers import BertConfig

    size = (
        dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, vocab_size=len(tokenizer))
        if tiny
        else dict(vocab_size=30522)
    )
    return BertConfig(**size, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)


def decoder_tokenizer() -> Any:
    """llmft's builtin byte-level BPE (ChatML template), the tokenizer of its tiny decoders."""
    from transformers import AutoTokenizer

    from llmft.models.builtin import tiny_bpe_path

    return AutoTokenizer.from_pretrained(tiny_bpe_path())


def encoder_tokenizer() -> Any:
    """A BERT-style WordPiece ([CLS] text [SEP], lower-cased) trained on llmft's bundled data."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from llmft.models.builtin import _corpus

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(_corpus(), trainer=trainers.WordPieceTrainer(vocab_size=8192, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[(s, tok.token_to_id(s)) for s in ("[CLS]", "[SEP]")],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )


# name -> (auto class, tokenizer, config from tokenizer and size)
SHAPES: dict[str, tuple[str, Callable[[], Any], Callable[[Any, bool], Any]]] = {
    "qwen2.5-0.5b": ("AutoModelForCausalLM", decoder_tokenizer, qwen_config),
    "bert-base": ("AutoModel", encoder_tokenizer, bert_config),
}


def cache_root() -> Path:
    from llmft.models.builtin import cache_dir

    return cache_dir() / "shapes"


def shape_path(name: str, tiny: bool = False) -> Path:
    """The folder of a shape, built on first use (on the GPU when there is one: initialising 494M weights is
    faster there) and cached; a finished folder is never rebuilt."""
    import torch
    import transformers

    target = cache_root() / f"{name}{'-tiny' if tiny else ''}-{VERSION}"
    if (target / "config.json").is_file():
        return target
    auto_class, make_tokenizer, make_config = SHAPES[name]
    tokenizer = make_tokenizer()
    config = make_config(tokenizer, tiny)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = getattr(transformers, auto_class).from_config(config, dtype=torch.float32)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    model.save_pretrained(tmp)  # fp32 weights: what llmft trains (autocast keeps the weights fp32)
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, target)
    except OSError:  # another process finished it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=list(SHAPES), help=", ".join(SHAPES))
    parser.add_argument("--tiny", action="store_true", help="a few small layers of the same architecture")
    args = parser.parse_args()
    for name in args.names:
        if name not in SHAPES:
            sys.exit(f"unknown shape {name}; have {', '.join(SHAPES)}")
        print(shape_path(name, args.tiny))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # llmft from this checkout when not installed
    main()
