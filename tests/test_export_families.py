"""`llmft export format=onnx` for the families beyond classification: embeddings in sentence-transformers' ONNX layout
(onnx/model.onnx beside modules.json and the Pooling folder) and multiple choice (a choice axis); onnxruntime's outputs
equal PyTorch's on other shapes than the export traced."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FAST, cli, only_run_dir

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _train(root: Path, *args: str) -> Path:
    cli(["train", *FAST, "task.data.max_eval_samples=32", *args], cwd=root)
    return only_run_dir(root / "outputs")


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _feed(session, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {i.name: inputs.get(i.name, inputs["input_ids"] * 0) for i in session.get_inputs()}


@pytest.fixture(scope="module")
def emb_run(tmp_path_factory) -> Path:
    """A tiny-bert embedding run with its ONNX export in <run>/export/onnx."""
    root = tmp_path_factory.mktemp("export_emb")
    run = _train(root, "task=embedding")
    cli(["export", f"run={run}", "verify_rows=16"], cwd=root)
    return run


def test_embedding_run_exports_in_sentence_transformers_onnx_layout(emb_run):
    run = emb_run
    out, best = run / "export" / "onnx", run / "checkpoints" / "best"
    record = json.loads((out / "export.json").read_text())
    assert record["passed"] and record["agreement"] == 1.0 and record["max_abs_logit_diff"] < 1e-4
    assert record["model_file"] == "onnx/model.onnx" and (out / "onnx" / "model.onnx").is_file()
    assert (out / "modules.json").read_text() == (best / "modules.json").read_text()
    assert (out / "1_Pooling" / "config.json").is_file() and (out / "sentence_bert_config.json").is_file()

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.backend.utils import backend_should_export
    from transformers import AutoTokenizer

    export, kwargs = backend_should_export(out, True, {}, "model.onnx", "*.onnx", "ONNX")  # what backend="onnx" runs
    assert not export and kwargs.get("subfolder") == "onnx"
    texts = ["A cat sits on the mat.", "Stocks fell sharply today after the long weekend.", "Hi"]
    tokenizer = AutoTokenizer.from_pretrained(out)
    inputs = {k: v.astype("int64") for k, v in tokenizer(texts, padding=True, return_tensors="np").items()}
    session = _session(out / "onnx" / "model.onnx")
    states = session.run(None, _feed(session, inputs))[0]
    mask = inputs["attention_mask"][..., None]
    pooled = (states * mask).sum(1) / mask.sum(1)
    expected = SentenceTransformer(str(best), device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(pooled, expected, atol=1e-4)


@pytest.mark.slow  # ~10 s: a multiple-choice run and its export
def test_multiple_choice_run_exports_with_a_choice_axis(tmp_path):
    run = _train(tmp_path, "task=multiple-choice")
    cli(["export", f"run={run}", "verify_rows=16"], cwd=tmp_path)
    out = run / "export" / "onnx"
    record = json.loads((out / "export.json").read_text())
    assert record["passed"] and record["agreement"] == 1.0 and "chosen answer" in record["compared_items"]

    import torch
    from transformers import AutoModelForMultipleChoice, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    question, choices = "Where do fish live?", ["In the sea.", "On the moon, far away.", "Trees.", "In a river bed."]
    enc = tokenizer([question] * 4, choices, padding=True, return_tensors="np")  # 4 choices: the export traced 3
    inputs = {k: v[None].astype("int64") for k, v in enc.items()}
    session = _session(out / "model.onnx")
    got = session.run(None, _feed(session, inputs))[0]
    model = AutoModelForMultipleChoice.from_pretrained(run / "checkpoints" / "best").eval()
    with torch.inference_mode():
        expected = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.numpy()
    assert got.shape == (1, 4)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_onnx_backend_serves_the_embedding_export_as_the_torch_backend_does(emb_run):
    from fastapi.testclient import TestClient

    from llmft.commands.common import load_run_config
    from llmft.commands.open_run import load_predictor
    from llmft.config import TrainConfig
    from llmft.deploy_config import ServeConfig
    from llmft.serving.app import build_app
    from llmft.serving.onnx_model import load_onnx_model
    from llmft.serving.served_model import ServedModel

    texts = ["The doctor bought the car.", "A physician purchased an automobile at dawn, early.", "Rain."]
    task, model, tokenizer, max_length = load_predictor(ServeConfig(run=str(emb_run)))
    answers = []
    for served in (
        ServedModel("emb", task, model, tokenizer, max_length, "cpu", task.cfg.generation, 4),
        load_onnx_model("emb", emb_run, load_run_config(emb_run, TrainConfig), None),
    ):
        with TestClient(build_app(served, max_batch_size=4)) as client:
            response = client.post("/v1/embeddings", json={"input": texts, "model": "emb"})
            assert response.status_code == 200, response.text
            assert client.post("/v1/classify", json={"input": texts}).status_code == 400
        answers.append(response.json())
    torch_answer, onnx_answer = answers
    assert onnx_answer["usage"] == torch_answer["usage"]
    vectors = [np.array([d["embedding"] for d in a["data"]]) for a in answers]
    np.testing.assert_allclose(vectors[1], vectors[0], atol=1e-4)


@pytest.mark.slow  # ~12 s: a decoder run, its export and a decode loop
def test_decoder_exports_with_a_kv_cache_that_decodes_as_pytorch_generate(tmp_path):
    """The decoder's graph takes and returns its KV cache (optimum's names): greedy decoding of a left-padded batch,
    feeding only each new token and the cache, gives transformers' generate tokens; the first step's logits match."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = _train(tmp_path, "task=sft", "model=tiny-gpt2")
    cli(["export", f"run={run}", "verify_rows=8"], cwd=tmp_path)
    out = run / "export" / "onnx"
    record = json.loads((out / "export.json").read_text())
    assert record["passed"] and record["max_abs_logit_diff"] < 1e-4
    session = _session(out / "model.onnx")
    pasts = [i for i in session.get_inputs() if i.name.startswith("past_key_values.")]
    assert pasts[0].name == "past_key_values.0.key" and [o.name for o in session.get_outputs()][1] == "present.0.key"
    tokenizer = AutoTokenizer.from_pretrained(out, padding_side="left")
    enc = tokenizer(["Hello there, my good friend", "Hi"], padding=True, return_tensors="np")
    ids, mask = enc["input_ids"].astype("int64"), enc["attention_mask"].astype("int64")
    model = AutoModelForCausalLM.from_pretrained(run / "checkpoints" / "best").eval()
    with torch.inference_mode():
        expected = model.generate(
            torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), max_new_tokens=6, do_sample=False, pad_token_id=0
        )
        positions = np.clip(mask.cumsum(-1) - 1, 0, None)  # left padding: each row counts from its first token
        first = model(
            **{k: torch.from_numpy(v) for k, v in (("input_ids", ids), ("attention_mask", mask), ("position_ids", positions))}
        )
    first = first.logits.numpy()
    cache = {i.name: np.zeros((2, i.shape[1], 0, i.shape[3]), np.float32) for i in pasts}
    tokens, new = ids, ids
    for step in range(6):
        logits, *presents = session.run(None, {"input_ids": new, "attention_mask": mask, "position_ids": positions, **cache})
        if step == 0:
            np.testing.assert_allclose(logits[mask.astype(bool)], first[mask.astype(bool)], atol=1e-4)
        new = logits[:, -1].argmax(-1)[:, None]
        cache = dict(zip(cache, presents))
        tokens, mask, positions = (
            np.concatenate([tokens, new], 1),
            np.pad(mask, ((0, 0), (0, 1)), constant_values=1),
            positions[:, -1:] + 1,
        )
    assert tokens.tolist() == expected.numpy().tolist()


@pytest.mark.slow  # ~15 s: a seq2seq run and its three graphs
def test_seq2seq_run_exports_optimums_graphs_that_decode_as_pytorch_generate(tmp_path):
    """A tiny-t5 summarization run exports encoder_model.onnx, decoder_model.onnx and decoder_with_past_model.onnx in
    optimum's names; the export verified itself by greedy decoding, and greedy through the graphs on other texts (another
    batch size and length) gives `generate`'s tokens, step logits within 1e-4."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from llmft.export.onnx import onnx_session
    from llmft.export.seq2seq_onnx import seq2seq_runner
    from llmft.export.verify import greedy_runner

    run = _train(tmp_path, "task=summarization", "model=tiny-t5")
    cli(["export", f"run={run}", "verify_rows=8"], cwd=tmp_path)
    out = run / "export" / "onnx"
    record = json.loads((out / "export.json").read_text())
    assert record["passed"] and record["agreement"] == 1.0 and record["max_abs_logit_diff"] < 1e-4, record
    assert record["model_file"] == "encoder_model.onnx" and "greedy answer" in record["compared_items"]
    names = {f: _session(out / f) for f in ("encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx")}
    assert [i.name for i in names["encoder_model.onnx"].get_inputs()] == ["input_ids", "attention_mask"]
    assert [i.name for i in names["decoder_model.onnx"].get_inputs()] == [
        "input_ids",
        "encoder_attention_mask",
        "encoder_hidden_states",
    ]
    with_past = names["decoder_with_past_model.onnx"]
    assert [i.name for i in with_past.get_inputs()][:4] == [
        "input_ids",
        "encoder_attention_mask",
        "past_key_values.0.decoder.key",
        "past_key_values.0.decoder.value",
    ]
    assert [o.name for o in with_past.get_outputs()][1:3] == ["present.0.decoder.key", "present.0.decoder.value"]
    tokenizer = AutoTokenizer.from_pretrained(out)
    texts = ["summarize: The cat sat on the mat all day long.", "summarize: Rain.", "summarize: Markets rose today."]
    batch = {k: v.astype("int64") for k, v in tokenizer(texts, padding=True, return_tensors="np").items()}
    tokens, logits = seq2seq_runner(out, onnx_session)(batch)
    model = AutoModelForSeq2SeqLM.from_pretrained(run / "checkpoints" / "best").eval()
    expected_tokens, expected_logits = greedy_runner(model)(batch)
    assert tokens.tolist() == expected_tokens.tolist()
    np.testing.assert_allclose(logits, expected_logits, atol=1e-4)
    torch_answers, onnx_answers = _completions(run, texts)
    assert onnx_answers == torch_answers and torch_answers[0]["usage"]["completion_tokens"] > 0


def _completions(run: Path, texts: list[str]) -> list[list[dict]]:
    """/v1/completions (greedy, then sampled with a seed) answered by backend=torch and by backend=onnx."""
    from fastapi.testclient import TestClient

    from llmft.commands.open_run import saved_run_config
    from llmft.commands.serve import load_served
    from llmft.deploy_config import ServeConfig
    from llmft.serving.app import build_app
    from llmft.serving.onnx_model import load_onnx_model

    answers = []
    for served in (load_served(ServeConfig(run=str(run))), load_onnx_model("s2s", run, saved_run_config(run), None)):
        with TestClient(build_app(served, max_batch_size=4)) as client:
            asks = [{"temperature": 0}, {"temperature": 0.9, "top_p": 0.9, "seed": 3, "n": 2}]
            responses = [client.post("/v1/completions", json={"prompt": texts, "max_tokens": 12, **a}) for a in asks]
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        answers.append([{k: r.json()[k] for k in ("choices", "usage")} for r in responses])
    return answers


def test_a_head_without_a_graph_is_refused_in_one_line():
    """A head no exporter builds (seq2seq's now is built) is refused in one line naming the families that export."""
    from llmft.errors import UserError
    from llmft.export.heads import head_for

    assert head_for("AutoModelForSeq2SeqLM").model_file == "encoder_model.onnx"
    with pytest.raises(UserError, match="seq2seq runs; this run's head is CausalLMWithValueHead"):
        head_for("AutoModelForCausalLMWithValueHead")
