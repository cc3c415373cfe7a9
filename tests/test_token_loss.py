"""Chunked linear cross-entropy (engine/token_loss.py) equals the plain full-logits path: loss and every gradient, on
tiny GPT-2, T5 and Llama-shaped models, padded and packed; and the chunked path never holds a whole batch's logits."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from llmft.engine import token_loss
from llmft.engine.token_loss import IGNORE, split_head, token_loss_sum

from conftest import cli

VOCAB = 97


def _llama() -> torch.nn.Module:
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    return transformers.LlamaForCausalLM(config)


def _gpt2() -> torch.nn.Module:
    return transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0
        )
    )


def _t5() -> torch.nn.Module:
    config = transformers.T5Config(
        vocab_size=VOCAB,
        d_model=32,
        d_ff=64,
        d_kv=16,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        decoder_start_token_id=0,
        pad_token_id=0,
        dropout_rate=0.0,
    )
    return transformers.T5ForConditionalGeneration(config)


def _batch(seed: int, packed: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (3, 12), generator=g)
    targets = torch.randint(0, VOCAB, (3, 12), generator=g)
    targets[:, :4] = IGNORE  # a prompt
    targets[2, 9:] = IGNORE  # padding
    if packed:
        return {"input_ids": ids, "position_ids": torch.tensor([list(range(5)) + list(range(7))] * 3)}, targets
    mask = torch.ones_like(ids)
    mask[2, 9:] = 0
    return {"input_ids": ids, "attention_mask": mask}, targets


def _loss_and_grads(model: torch.nn.Module, inputs: dict, targets: torch.Tensor, chunked: bool) -> tuple[float, dict]:
    model.zero_grad(set_to_none=True)
    loss = token_loss_sum(model, inputs, targets, chunked=chunked)
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_equal(model: torch.nn.Module, inputs: dict, targets: torch.Tensor) -> None:
    assert split_head(model) is not None, "the tiny model's head must take the chunked path"
    plain_loss, plain_grads = _loss_and_grads(model, inputs, targets, chunked=False)
    loss, grads = _loss_and_grads(model, inputs, targets, chunked=True)
    assert loss == pytest.approx(plain_loss, rel=1e-5)
    assert grads.keys() == plain_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, plain_grads[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("build", [_llama, _gpt2], ids=["llama", "gpt2"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_chunked_loss_and_gradients_equal_the_plain_path_for_decoders(build, packed, monkeypatch) -> None:
    monkeypatch.setattr(token_loss, "CHUNK_ELEMENTS", VOCAB * 5)  # 5 rows per chunk: several chunks and a ragged last one
    torch.manual_seed(0)
    model = build().float()
    _assert_equal(model, *_batch(1, packed))


def test_chunked_loss_and_gradients_equal_the_plain_path_for_t5(monkeypatch) -> None:
    monkeypatch.setattr(token_loss, "CHUNK_ELEMENTS", VOCAB * 4)
    torch.manual_seed(0)
    model = _t5()
    inputs, targets = _batch(2)
    inputs["decoder_input_ids"] = model.prepare_decoder_input_ids_from_labels(labels=targets)
    _assert_equal(model, inputs, targets)


def test_accumulated_chunked_gradients_equal_the_plain_path(monkeypatch) -> None:
    """Two micro-batches accumulated into .grad (as the loop does) give the plain path's sum, frozen head included."""
    monkeypatch.setattr(token_loss, "CHUNK_ELEMENTS", VOCAB * 3)
    torch.manual_seed(0)
    model = _gpt2()
    model.lm_head.weight.requires_grad_(False)  # a frozen (tied) head: no weight gradient is computed
    grads = {}
    for chunked in (False, True):
        model.zero_grad(set_to_none=True)
        for seed in (3, 4):
            token_loss_sum(model, *_batch(seed), chunked=chunked).backward()
        grads[chunked] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    for name, grad in grads[True].items():
        torch.testing.assert_close(grad, grads[False][name], rtol=1e-5, atol=1e-6, msg=name)


def test_no_grad_chunked_loss_equals_the_plain_one() -> None:
    torch.manual_seed(0)
    model = _llama().eval()
    inputs, targets = _batch(5)
    with torch.no_grad():
        assert float(token_loss_sum(model, inputs, targets)) == pytest.approx(
            float(token_loss_sum(model, inputs, targets, chunked=False)), rel=1e-6
        )


def test_a_head_that_is_more_than_a_linear_layer_takes_the_plain_path() -> None:
    config = transformers.Gemma2Config(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
    )
    assert split_head(transformers.Gemma2ForCausalLM(config)) is None  # soft-capped logits


def test_the_chunked_path_never_builds_a_batch_of_logits(monkeypatch) -> None:
    """No output-layer result in the chunked forward + backward is wider than one chunk of rows."""
    monkeypatch.setattr(token_loss, "CHUNK_ELEMENTS", VOCAB * 4)
    torch.manual_seed(0)
    model = _gpt2()
    inputs, targets = _batch(6)
    widest = []
    real_linear = torch.nn.functional.linear

    def spy(x, w, b=None):
        out = real_linear(x, w, b)
        if w.shape[0] == VOCAB:
            widest.append(out.numel() // VOCAB)
        return out

    monkeypatch.setattr(token_loss.F, "linear", spy)
    token_loss_sum(model, inputs, targets).backward()
    assert widest and max(widest) <= 4


def test_sft_trains_the_same_with_and_without_chunking(tmp_path) -> None:
    """Through the CLI: tiny-gpt2 SFT losses, logged every step with gradient accumulation, equal the plain path's."""
    losses = {}
    for chunked in ("true", "false"):
        out = tmp_path / chunked
        cli(
            [
                "train",
                "task=sft",
                "model=tiny-gpt2",
                "trainer.max_steps=4",
                "trainer.batch_size=4",
                "trainer.grad_accum_steps=2",
                "trainer.log_every=1",
                "trainer.progress=false",
                "task.eval_generate_samples=2",
                "task.generation.max_new_tokens=2",
                "task.data.max_train_samples=64",
                "task.data.max_eval_samples=16",
                f"task.chunked_loss={chunked}",
                f"hydra.run.dir={out}",
            ],
            tmp_path,
        )
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        losses[chunked] = [r["train/loss"] for r in records if "train/loss" in r]
        losses[chunked + "-eval"] = [r["eval/loss"] for r in records if "eval/loss" in r]
    assert len(losses["true"]) == 4
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-5)
    assert losses["true-eval"] == pytest.approx(losses["false-eval"], rel=1e-5)


def test_training_and_evaluation_never_build_a_batch_of_logits(tmp_path, monkeypatch):
    """Through the CLI (SFT on tiny-gpt2, eval batches of 64 rows): no output-layer result anywhere in training or
    evaluation is wider than one chunk of rows (the eval that held 64 rows' full-vocabulary logits, issue #19.8)."""
    import llmft.engine.token_loss as tl

    vocab = {}
    widest = []
    real_linear = torch.nn.functional.linear

    def spy(x, w, b=None):
        out = real_linear(x, w, b)
        if w.shape[0] == vocab.setdefault("n", w.shape[0]):
            widest.append(out.numel() // w.shape[0])
        return out

    def head_hook(module, args, output):  # the head itself sees zero positions on the chunked path
        widest.append(output.numel() // output.shape[-1] if output.numel() else 0)

    monkeypatch.setattr(tl, "CHUNK_ELEMENTS", 1 << 16)
    monkeypatch.setattr(tl.F, "linear", spy)
    real_split = tl.split_head

    def split_and_watch(model):
        head = real_split(model)
        if head is not None and not getattr(head, "_watched", False):
            head.register_forward_hook(head_hook)
            head._watched = True
        return head

    monkeypatch.setattr(tl, "split_head", split_and_watch)
    cli(
        [
            "train",
            "task=sft",
            "model=tiny-gpt2",
            "trainer.max_steps=2",
            "trainer.batch_size=8",
            "trainer.eval_batch_size=64",
            "trainer.progress=false",
            "task.eval_generate_samples=0",
            "task.select_metric=loss",
            "task.data.max_train_samples=32",
            "task.data.max_eval_samples=64",
        ],
        tmp_path,
    )
    rows_per_chunk = (1 << 16) // vocab["n"]
    assert widest and max(widest) <= rows_per_chunk
