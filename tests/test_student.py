"""A student built from a teacher's layers (model.keep_layers / model.num_layers) for each architecture family: the
kept blocks compute what they did, and the saved checkpoint loads in plain transformers with the new layer count."""

from __future__ import annotations

import pytest
import torch
import transformers as tf

from llmft.errors import UserError
from llmft.models.student import shrink, spaced_layers

ARCHITECTURES = {
    "bert": (
        lambda: tf.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32),
        tf.AutoModelForSequenceClassification,
    ),
    "llama": (
        lambda: tf.LlamaConfig(
            vocab_size=64, hidden_size=16, num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=1, intermediate_size=32
        ),
        tf.AutoModelForCausalLM,
    ),
    "gpt2": (
        lambda: tf.GPT2Config(vocab_size=64, n_embd=16, n_layer=4, n_head=2, bos_token_id=0, eos_token_id=0),
        tf.AutoModelForCausalLM,
    ),
    "t5": (
        lambda: tf.T5Config(
            vocab_size=64, d_model=16, d_ff=32, d_kv=8, num_layers=4, num_decoder_layers=4, num_heads=2, decoder_start_token_id=0
        ),
        tf.AutoModelForSeq2SeqLM,
    ),
}


def test_evenly_spaced_layers_are_distilbert_s_choice():
    assert (
        spaced_layers(6, 3) == [0, 2, 4] and spaced_layers(12, 6) == [0, 2, 4, 6, 8, 10] and spaced_layers(4, 4) == [0, 1, 2, 3]
    )


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_a_student_of_kept_layers_saves_and_loads_in_plain_transformers(tmp_path, name):
    config, auto = ARCHITECTURES[name]
    torch.manual_seed(0)
    model = auto.from_config(config()).eval()
    assert shrink(model, [1, 3], None) == [1, 3]  # layer 0 dropped: T5's relative position bias must move along
    ids = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(0))
    extra = {"decoder_input_ids": ids} if name == "t5" else {}
    before = model(input_ids=ids, **extra).logits
    model.save_pretrained(tmp_path)
    loaded = auto.from_pretrained(tmp_path).eval()
    assert loaded.config.num_hidden_layers == 2
    assert torch.allclose(loaded(input_ids=ids, **extra).logits, before, atol=1e-6)
    positions = sorted({m.layer_idx for m in loaded.modules() if isinstance(getattr(m, "layer_idx", None), int)})
    assert positions in ([], [0, 1])  # the KV cache's slots renumbered
    if name == "t5":
        assert loaded.config.num_decoder_layers == 2
    if name in ("llama", "gpt2"):  # a cached generation indexes the cache by layer_idx
        assert loaded.generate(ids[:1], max_new_tokens=3, do_sample=False).shape == (1, 10)


def test_num_layers_keeps_evenly_spaced_blocks_and_bad_choices_name_themselves():
    config, auto = ARCHITECTURES["bert"]
    model = auto.from_config(config())
    kept = [model.bert.encoder.layer[i] for i in (0, 2)]
    shrink(model, None, 2)
    assert list(model.bert.encoder.layer) == kept and model.config.num_hidden_layers == 2
    with pytest.raises(UserError, match=r"model.keep_layers=\[0, 5\]: layer 5 is not one of"):
        shrink(auto.from_config(config()), [0, 5], None)
    with pytest.raises(UserError, match="model.num_layers=9: the backbone's"):
        shrink(auto.from_config(config()), None, 9)
