"""Tokenizer and pretrained backbone for a task head, from a hub id, a local folder or a builtin model."""

from __future__ import annotations

import logging
import pickle
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from llmft.config import ModelConfig
from llmft.errors import UserError, closest
from llmft.models import heads, temperature
from llmft.models.builtin import BUILTIN_MODELS, tiny_config
from llmft.models.finetune import dropout_overrides
from llmft.models.student import shrink
from llmft.reporting.console import plain
from llmft.runs.checkpoint import check_weights, refused_pickle

BUILTIN_PREFIX = "builtin:"
log = logging.getLogger(__name__)
# what each head needs, and the shipped `model=` options that fit it (offline ones first)
FITTING_MODELS = {
    "CausalLM": (
        "a decoder-only model",
        ["smollm2-135m", "tiny-gpt2", "gpt2", "qwen2.5-0.5b", "qwen2.5-0.5b-instruct", "llama-3.2-1b"],
    ),
    "Seq2SeqLM": ("an encoder-decoder model", ["tiny-t5", "t5-small", "flan-t5-base", "bart-base"]),
    "SequenceClassification": (
        "an encoder (or a decoder: reward models)",
        ["minilm-l6", "tiny-bert", "bert-base", "roberta-base", "distilbert", "deberta-v3", "smollm2-135m"],
    ),
    "QuestionAnswering": ("an encoder", ["minilm-l6", "tiny-bert", "bert-base", "roberta-base", "distilbert", "deberta-v3"]),
    "MultipleChoice": ("an encoder", ["minilm-l6", "tiny-bert", "bert-base", "roberta-base", "distilbert", "deberta-v3"]),
    "TokenClassification": ("an encoder", ["minilm-l6", "tiny-bert", "bert-base", "roberta-base", "distilbert", "deberta-v3"]),
    "AutoModel": (
        "a backbone (an encoder fits best)",
        ["minilm-l6", "tiny-bert", "bert-base", "roberta-base", "distilbert", "deberta-v3"],
    ),
}


def _builtin(name: str) -> tuple[str, str | None]:
    key = name[len(BUILTIN_PREFIX) :]
    if key not in BUILTIN_MODELS:
        raise UserError(f"unknown builtin model '{name}'{closest(key, BUILTIN_MODELS)}; builtins: {', '.join(BUILTIN_MODELS)}")
    tokenizer_fn, weights_fn = BUILTIN_MODELS[key]
    return tokenizer_fn(), (weights_fn() if weights_fn else None)


def is_random(cfg: ModelConfig) -> bool:
    """A builtin test model built from a config (no pretrained weights to reload an adapter onto)."""
    key = cfg.name_or_path[len(BUILTIN_PREFIX) :]
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
        return UserError(
            f"{what} '{source}' needs custom code that is not part of transformers; if you trust its source, set model.trust_remote_code=true"
        )
    if Path(str(source)).expanduser().is_dir():  # a local folder: its files, not the network
        return UserError(
            f"could not load {what} '{source}': {first} (a damaged file: restore it from a copy, or choose another checkpoint)"
        )
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


def load_model(
    head: str | Any,
    weights: str | None,
    tokenizer: Any,
    cfg: ModelConfig,
    load_kwargs: dict[str, Any] | None = None,
    **head_kwargs: Any,
) -> Any:
    """A model with the task's head (`task.auto_class_name`, or the Auto class itself) and the head's extras
    (`task.head_kwargs()`: labels for classification): pretrained weights when given, else a tiny random model
    (builtin). A model without a pad id gets the tokenizer's (batches are padded with it). `load_kwargs` go to
    `from_pretrained` (QLoRA's 4-bit quantization config)."""
    if load_kwargs and weights is None:
        raise UserError(
            f"finetune=qlora quantizes pretrained weights; {cfg.name_or_path} is a random model: "
            "choose a pretrained one (e.g. model=smollm2-135m)"
        )
    if isinstance(head, str):
        import transformers

        head = getattr(transformers, head)
    model = _load_with_head(head, weights, tokenizer, cfg, head_kwargs, load_kwargs or {})
    if cfg.keep_layers is not None or cfg.num_layers is not None:
        kept = shrink(model, cfg.keep_layers, cfg.num_layers)
        log.info(f"student: layers {kept} of the backbone kept")
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def _load_with_head(
    auto_class: Any,
    weights: str | None,
    tokenizer: Any,
    cfg: ModelConfig,
    head_kwargs: dict[str, Any],
    load_kwargs: dict[str, Any],
) -> Any:
    try:
        if weights is None:
            config = tiny_config(cfg.name_or_path[len(BUILTIN_PREFIX) :], tokenizer)
            if cfg.dropout is not None:
                head_kwargs.update(dropout_overrides(config, cfg.dropout))
            for key, value in head_kwargs.items():
                setattr(config, key, value)
            model = auto_class.from_config(config)
        else:
            if cfg.dropout is not None:
                from transformers import AutoConfig

                config = AutoConfig.from_pretrained(weights, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
                head_kwargs.update(dropout_overrides(config, cfg.dropout))
            import torch

            # fp32 master weights whatever the checkpoint's dtype (transformers 5 loads a bf16 hub checkpoint as bf16):
            # autocast computes in bf16/fp16, the optimizer updates fp32 weights, and a GradScaler never meets fp16 grads
            with _load_report():
                model, info = (
                    heads.load_pruned(auto_class, weights, **head_kwargs)  # a `llmft prune method=heads` checkpoint
                    if heads.is_head_pruned(weights) and not load_kwargs
                    else auto_class.from_pretrained(
                        weights,
                        revision=cfg.revision,
                        trust_remote_code=cfg.trust_remote_code,
                        output_loading_info=True,
                        **{"dtype": torch.float32, **load_kwargs},
                        **head_kwargs,
                    )
                )
            _note_loading(info, "trained from scratch")
    except ValueError as ex:
        if "Unrecognized configuration class" in str(ex):
            head = auto_class.__name__.replace("AutoModelFor", "")
            raise mismatch_error(auto_class.__name__, cfg.name_or_path, f"it has no {head} head") from ex
        raise _load_error("model", weights or cfg.name_or_path, ex) from ex
    except OSError as ex:
        raise _load_error("model", weights or cfg.name_or_path, ex) from ex
    _check_decoder(auto_class.__name__, model.config, cfg.name_or_path)
    return model


def mismatch_error(auto_class_name: str, name: str, why: str) -> UserError:
    """One line: the model does not fit the task's head, and the `model=` options that do."""
    head = auto_class_name.replace("AutoModelFor", "")
    what, options = FITTING_MODELS.get(head, ("another backbone", []))
    fits = f", e.g. model={' / '.join(options)}" if options else ""
    return UserError(f"model '{name}' does not fit this task: {why}; it needs {what} with a {head} head{fits}")


def check_fits(auto_class_name: str, weights: str | None, tokenizer: Any, cfg: ModelConfig) -> None:
    """Refuse, before any data is tokenized, a backbone that does not fit the task's head (read from its config)."""
    from transformers.models.auto import modeling_auto

    try:
        if weights is None:
            config = tiny_config(cfg.name_or_path[len(BUILTIN_PREFIX) :], tokenizer)
        else:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(weights, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
    except Exception:  # noqa: BLE001 - loading the model itself reports what is wrong with it
        return
    head = auto_class_name.replace("AutoModelFor", "")
    names = {
        "CausalLM": "CAUSAL_LM",
        "Seq2SeqLM": "SEQ_TO_SEQ_CAUSAL_LM",
        "SequenceClassification": "SEQUENCE_CLASSIFICATION",
        "QuestionAnswering": "QUESTION_ANSWERING",
        "MultipleChoice": "MULTIPLE_CHOICE",
        "TokenClassification": "TOKEN_CLASSIFICATION",
    }.get(head)
    mapping = getattr(modeling_auto, f"MODEL_FOR_{names}_MAPPING_NAMES", None) if names else None
    custom = auto_class_name in (getattr(config, "auto_map", None) or {})  # trust_remote_code models bring their own head
    if mapping is not None and not custom and config.model_type not in mapping:
        raise mismatch_error(auto_class_name, cfg.name_or_path, f"{config.model_type} has no {head} head")
    _check_decoder(auto_class_name, config, cfg.name_or_path)


def _check_decoder(auto_class_name: str, config: Any, name: str) -> None:
    """transformers gives encoders (BERT, RoBERTa...) a CausalLM head too, which cannot generate; refuse them."""
    if auto_class_name != "AutoModelForCausalLM":
        return
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    if config.is_encoder_decoder:
        raise mismatch_error(auto_class_name, name, f"{config.model_type} is an encoder-decoder (it fits task.family=seq2seq)")
    if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False):
        raise mismatch_error(auto_class_name, name, f"{config.model_type} is an encoder, which cannot generate text")


def load_finetuned(auto_class_name: str, folder: Path) -> Any:
    """A fine-tuned checkpoint folder (save_pretrained format) with its head; never runs remote code."""
    import transformers

    folder = Path(folder)
    # a truncated or garbled weights file: one line naming it, not safetensors' traceback
    fix = "restore it from a copy, or choose another checkpoint (checkpoint=best|last|<folder>)"
    check_weights(folder, fix)
    try:
        if (folder / "adapter_config.json").is_file():
            return temperature.attach(_load_adapter(getattr(transformers, auto_class_name), folder), folder)
        if not (folder / "config.json").is_file():
            raise UserError(f"{folder} is not a model checkpoint (no config.json)")
        with _load_report():
            auto_class = getattr(transformers, auto_class_name)
            model, info = (
                heads.load_pruned(auto_class, folder)  # heads removed by `llmft prune method=heads`
                if heads.is_head_pruned(folder)
                else auto_class.from_pretrained(folder, trust_remote_code=False, output_loading_info=True)
            )
    except pickle.UnpicklingError as ex:  # a *.bin that weights_only refused (code in it): as trainer_state.pt is refused
        raise refused_pickle(folder, ex, fix) from ex
    except (OSError, ValueError) as ex:
        raise _load_error("checkpoint", str(folder), ex) from ex
    _note_loading(info, f"not in the checkpoint {folder}: random")

    return temperature.attach(model, folder)  # task.calibrate=true: the fitted temperature saved with the checkpoint


class _HeldReport(logging.Filter):
    """Holds back transformers' load report (a table with colour codes, whatever the stream): what matters in it is
    said in one line by `_note_loading`."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if "LOAD REPORT" in str(record.msg):
            self.held.append(record)
            return False
        return True


@contextmanager
def _load_report() -> Iterator[None]:
    """Hold the load report of a `from_pretrained` call; show it (without colour codes) only if the load fails, as the
    failure's explanation (transformers raises "look at the above report")."""
    logger, held = logging.getLogger("transformers.modeling_utils"), _HeldReport()
    logger.addFilter(held)
    try:
        yield
    except Exception:
        for record in held.held:
            log.error(plain(record.getMessage()))
        raise
    finally:
        logger.removeFilter(held)


def _note_loading(info: dict[str, Any], what: str) -> None:
    """The head weights the checkpoint lacked, in one line; the unused checkpoint weights (a pretraining head) in the
    run's log only."""
    missing = list(info.get("missing_keys") or [])
    if missing:
        names = ", ".join(sorted(missing)[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        log.warning(f"newly initialised: {names} ({what})")
    unused = list(info.get("unexpected_keys") or [])
    if unused:
        log.info(f"checkpoint weights this model does not use: {len(unused)} ({', '.join(sorted(unused)[:4])}...)")


def _load_adapter(auto_class: Any, folder: Path) -> Any:
    """A LoRA adapter saved without merging: its base model (with the run's head config) plus the adapter."""
    import json

    from peft import PeftModel
    from transformers import AutoConfig

    base = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise UserError(f"adapter {folder} does not name its base model; it cannot be loaded on its own")
    # trust_remote_code=False: a config.json naming custom code (auto_map, no model_type) is refused, never asked about
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False) if (folder / "config.json").is_file() else None
    if config is not None and hasattr(config, "quantization_config"):
        del config.quantization_config  # a QLoRA adapter applies to the full-precision base (as its merge does)
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
