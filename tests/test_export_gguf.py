"""`llmft export format=gguf`: a Llama-architecture decoder run as one GGUF file (f16, q8_0) that transformers loads
back (dequantized) with the checkpoint's logits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FAST, cli, only_run_dir

pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def llama_run(tmp_path_factory) -> Path:
    """A tiny random Llama (grouped-query attention, tied embeddings) on the tiny BPE tokenizer, trained a few steps."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from llmft.models.builtin import tiny_bpe_path

    root = tmp_path_factory.mktemp("export_llama")
    tokenizer = AutoTokenizer.from_pretrained(tiny_bpe_path())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(root / "tiny-llama")
    tokenizer.save_pretrained(root / "tiny-llama")
    cli(["train", *FAST, "task=sft", f"model.name_or_path={root / 'tiny-llama'}", "model.max_length=128"], cwd=root)
    return only_run_dir(root / "outputs")


def test_gguf_f16_and_q8_0_load_back_with_the_checkpoints_logits(llama_run, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cli(["export", f"run={llama_run}", "format=gguf", "verify_rows=32"], cwd=tmp_path)
    out = llama_run / "export" / "gguf"
    record = json.loads((out / "export.json").read_text())
    assert record["passed"] and record["agreement"] >= 0.99 and record["max_abs_logit_diff"] < 0.05
    cli(["export", f"run={llama_run}", "format=gguf", "quantize=int8", "verify_rows=32"], cwd=tmp_path)
    q8 = llama_run / "export" / "gguf-int8"
    assert json.loads((q8 / "export.json").read_text())["agreement"] >= 0.95
    assert (q8 / "model.gguf").stat().st_size < (out / "model.gguf").stat().st_size * 0.75

    import gguf

    reader = gguf.GGUFReader(out / "model.gguf")
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["tokenizer.ggml.model"].contents() == "gpt2"
    assert "output.weight" not in {t.name for t in reader.tensors}  # tied embeddings, as llama.cpp writes them

    modelfile = (out / "Modelfile").read_text()  # for Ollama: the file, greedy as the run decodes, the context, EOS
    assert "FROM ./model.gguf" in modelfile and "PARAMETER temperature 0" in modelfile and "PARAMETER num_ctx 128" in modelfile
    assert f"PARAMETER stop {json.dumps(reference_eos(llama_run))}" in modelfile

    tokenizer = AutoTokenizer.from_pretrained(out, gguf_file="model.gguf")  # the vocabulary travels in the file
    reference = AutoTokenizer.from_pretrained(llama_run / "checkpoints" / "best")
    text = "Write a short poem about the sea."
    assert tokenizer(text)["input_ids"] == reference(text)["input_ids"]
    ids = torch.tensor([reference(text)["input_ids"]])
    with torch.inference_mode():
        got = AutoModelForCausalLM.from_pretrained(out, gguf_file="model.gguf", dtype=torch.float32)(ids).logits
        want = AutoModelForCausalLM.from_pretrained(llama_run / "checkpoints" / "best")(ids).logits
    assert np.abs((got - want).numpy()).max() < 0.05


def reference_eos(run: Path) -> str:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(run / "checkpoints" / "best").eos_token


def test_a_chatml_run_gets_ollamas_chatml_template_and_its_stop_token():
    from types import SimpleNamespace

    from llmft.config import GenerationConfig
    from llmft.export.modelfile import modelfile_text

    chatml = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    tokenizer = SimpleNamespace(chat_template=chatml, eos_token="<|im_end|>")
    text = modelfile_text("model.gguf", tokenizer, GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9), 2048, True)
    assert "<|im_start|>{{ .Role }}" in text and text.count('PARAMETER stop "<|im_end|>"') == 1
    assert "PARAMETER temperature 0.7" in text and "PARAMETER top_p 0.9" in text and "PARAMETER num_ctx 2048" in text


@pytest.mark.slow  # seconds-long; the default suite stays under 10 minutes on 2 cores
def test_gguf_refuses_a_decoder_that_is_not_llama(tmp_path):
    cli(["train", *FAST, "task=sft", "model=tiny-gpt2"], cwd=tmp_path)
    proc = cli(["export", f"run={only_run_dir(tmp_path / 'outputs')}", "format=gguf"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "format=gguf writes Llama-architecture decoders" in proc.stderr and "gpt2" in proc.stderr
