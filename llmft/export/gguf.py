"""A Llama-architecture decoder (SmolLM2, Llama) as one GGUF file for llama.cpp-based runtimes, on the `gguf` package.

Follows llama.cpp's convert_hf_to_gguf.py (LlamaModel): hyperparameters under `llama.*`, tensor names from gguf's
TensorNameMap, q/k projections permuted to llama.cpp's rotary layout, norms kept in f32, no `output.weight` when the
embeddings are tied, the BPE vocabulary and merges (gguf.SpecialVocab) as tokenizer metadata. quantize=none writes
f16 matrices, quantize=int8 q8_0. Verified by loading the file back with transformers (`gguf_file=`, dequantized)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from llmft.deploy_config import ExportQuantize
from llmft.errors import UserError
from llmft.export.heads import Head
from llmft.export.modelfile import write_modelfile
from llmft.export.source import Source
from llmft.export.verify import torch_runner

GGUF_FILE = "model.gguf"
ARCHITECTURES = ("llama",)  # model_type values written as llama.cpp's `llama` architecture


def check_gguf(source: Source) -> None:
    """Refuse in one line what this writer does not handle."""
    model_type = source.plain_config().model_type
    if source.task.auto_class_name != "AutoModelForCausalLM" or model_type not in ARCHITECTURES:
        raise UserError(
            f"format=gguf writes Llama-architecture decoders (SmolLM2, Llama); this run's model is "
            f"{model_type} for {source.task.auto_class_name.removeprefix('AutoModelFor')} (format=onnx exports it)"
        )


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's rotary layout for q/k rows (convert_hf_to_gguf.LlamaModel.permute); transformers undoes it on load."""
    return weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def _hyperparameters(writer: Any, config: Any, file_type: int) -> None:
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    rope = getattr(config, "rope_theta", None) or (getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(file_type)


def _vocabulary(writer: Any, tokenizer: Any, folder: Path, n_vocab: int) -> None:
    """The byte-level BPE vocabulary (llama.cpp's `gpt2` tokenizer model), control tokens marked, merges and special
    token ids and the chat template through gguf.SpecialVocab (read from the saved tokenizer files)."""
    import gguf

    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    special = set(tokenizer.all_special_ids)
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(n_vocab)]
    types = [
        gguf.TokenType.CONTROL if i in special else gguf.TokenType.UNUSED if i not in by_id else gguf.TokenType.NORMAL
        for i in range(n_vocab)
    ]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")  # llama.cpp's converter names it by hashing the pre-tokenizer's output; not done here
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(folder, load_merges=True, n_vocab=n_vocab).add_to_gguf(writer)


def _tensors(writer: Any, model: Any, quantize: ExportQuantize) -> None:
    import gguf

    config = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    matrix_type = gguf.GGMLQuantizationType.Q8_0 if quantize is ExportQuantize.int8 else gguf.GGMLQuantizationType.F16
    tied = getattr(config, "tie_word_embeddings", False)
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp (and transformers' reader) tie the output to token_embd when output.weight is absent
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UserError(f"format=gguf: no GGUF name for tensor {hf_name}; this Llama variant is not supported")
        data = tensor.float().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = _permute(data, config.num_attention_heads)
        elif hf_name.endswith("k_proj.weight"):
            data = _permute(data, config.num_key_value_heads)
        qtype = matrix_type if data.ndim == 2 else gguf.GGMLQuantizationType.F32  # norms stay f32, as llama.cpp keeps them
        if qtype is gguf.GGMLQuantizationType.Q8_0 and data.shape[-1] % 32:
            qtype = gguf.GGMLQuantizationType.F16  # q8_0 blocks are 32 wide
        writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)


def write_gguf(source: Source, out: Path, quantize: ExportQuantize) -> Path:
    """Write out/model.gguf (+ config and tokenizer files beside it, for readers that want them, and an Ollama
    Modelfile); returns its path."""
    import gguf

    check_gguf(source)
    model = source.plain_model()
    source.tokenizer.save_pretrained(out)
    model.config.save_pretrained(out)
    path = out / GGUF_FILE
    file_type = gguf.LlamaFileType.MOSTLY_Q8_0 if quantize is ExportQuantize.int8 else gguf.LlamaFileType.MOSTLY_F16
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_name(source.run_dir.name)
    _hyperparameters(writer, model.config, file_type)
    _vocabulary(writer, source.tokenizer, out, model.config.vocab_size)
    _tensors(writer, model, quantize)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    chat = bool(getattr(source.task, "chat", False))  # the run renders its prompts with the chat template
    write_modelfile(out, GGUF_FILE, source.tokenizer, source.saved.task.generation, source.saved.model.max_length, chat)
    return path


def gguf_runner(path: Path, head: Head) -> Any:
    """The GGUF as transformers loads it (dequantized to fp32), as a verification Runner."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    return torch_runner(model, head)
