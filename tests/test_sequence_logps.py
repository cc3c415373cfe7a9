"""Per-sequence log-probabilities through the output layer in chunks (engine/token_loss.sequence_logps) equal the plain
log-softmax gather: values and every gradient in fp32, on GPT-2 and Llama shapes, with chunks smaller than a row."""

from __future__ import annotations

import pytest
import torch
import transformers

from llmft.engine import token_loss
from llmft.engine.token_loss import IGNORE, plain_sequence_logps, sequence_logps, split_head

VOCAB = 97


def _gpt2() -> torch.nn.Module:
    return transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0
        )
    )


def _llama() -> torch.nn.Module:
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    return transformers.LlamaForCausalLM(config)


def _batch() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, VOCAB, (4, 10), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    targets = torch.nn.functional.pad(ids[:, 1:], (0, 1), value=IGNORE)
    targets[:, :3] = IGNORE  # the prompt
    targets[mask == 0] = IGNORE
    targets[1, 6] = IGNORE
    return {"input_ids": ids, "attention_mask": mask}, targets


def _values_and_grads(model: torch.nn.Module, chunked: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    inputs, targets = _batch()
    logps = sequence_logps(model, inputs, targets, chunked=chunked)
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0])  # a non-uniform weighting of the rows, as DPO's losses are
    (logps * weights).sum().backward()
    return logps.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("build", [_gpt2, _llama])
@pytest.mark.parametrize("chunk", [1 << 26, VOCAB * 3])  # one chunk, or 3 rows per chunk
def test_chunked_sequence_logps_equal_the_plain_gather(build, chunk, monkeypatch):
    torch.manual_seed(0)
    model = build().float()
    assert split_head(model) is not None
    monkeypatch.setattr(token_loss, "CHUNK_ELEMENTS", chunk)
    plain, plain_grads = _values_and_grads(model, chunked=False)
    chunked, chunked_grads = _values_and_grads(model, chunked=True)
    torch.testing.assert_close(chunked, plain, atol=1e-5, rtol=1e-5)
    assert plain_grads.keys() == chunked_grads.keys()
    for name in plain_grads:
        torch.testing.assert_close(chunked_grads[name], plain_grads[name], atol=1e-5, rtol=1e-5, msg=name)


def test_plain_sequence_logps_sum_only_the_targets():
    logits = torch.randn(2, 3, 5)
    targets = torch.tensor([[1, IGNORE, 4], [IGNORE, IGNORE, 0]])
    expected = logits.log_softmax(-1)
    want = torch.stack([expected[0, 0, 1] + expected[0, 2, 4], expected[1, 2, 0]])
    torch.testing.assert_close(plain_sequence_logps(logits, targets), want)


def test_the_chunked_path_never_builds_the_batch_logits(monkeypatch):
    model = _gpt2().float()
    inputs, targets = _batch()
    seen = []
    model.lm_head.register_forward_hook(lambda m, a, out: seen.append(out.shape))
    sequence_logps(model, inputs, targets)
    assert seen and all(shape[-2] == 0 for shape in seen)  # the head computed the logits of zero positions
