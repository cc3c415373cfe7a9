"""`llmft prune`: head pruning removes exactly the heads it reports and the pruned run loads, evaluates and exports;
layer pruning leaves fewer layers that plain transformers loads; magnitude pruning reaches the asked sparsity; mistakes
are one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers

from tests.conftest import FAST, cli, only_run_dir


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prune_cls")
    cli(["train", *FAST, "task.data.max_eval_samples=64"], cwd=root)
    return only_run_dir(root / "outputs")


def _prune(run: Path, cwd: Path, *args: str) -> tuple[Path, dict]:
    out = cwd / "pruned"
    cli(["prune", f"run={run}", f"output={out}", "rows=32", *args], cwd=cwd)
    return out, json.loads((out / "prune.json").read_text())


def _fails(args: list[str], cwd: Path, *messages: str) -> None:
    proc = cli(args, cwd=cwd, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for message in messages:
        assert message in errors[0], errors[0]


def test_head_pruning_removes_the_heads_it_reports_and_the_run_evaluates_and_exports(cls_run, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out, report = _prune(cls_run, tmp_path, "method=heads", "amount=0.5")
    assert report["importance"] == "gradient"
    assert all(score >= 0 for row in report["scores"].values() for score in row.values())  # |d loss / d gate|
    removed = {int(k): v for k, v in report["removed"].items()}
    assert report["heads_before"] == 4 and report["heads_after"] == 2 and sum(map(len, removed.values())) == 2
    for layer, row in report["scores"].items():  # two layers of two heads, each keeps one: its less important goes
        assert removed[int(layer)] == [int(min(row, key=row.get))]

    best = out / "checkpoints" / "best"
    config = json.loads((best / "config.json").read_text())
    assert {int(k): v for k, v in config["pruned_heads"].items()} == removed
    from llmft.models.heads import load_pruned

    model, info = load_pruned(transformers.AutoModelForSequenceClassification, best)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    for layer in model.bert.encoder.layer:  # one head of 16 dims left of two
        assert layer.attention.self.query.weight.shape == (16, 32) and layer.attention.output.dense.weight.shape == (32, 16)
    assert report["after"]["parameters"] == sum(p.numel() for p in model.parameters()) < report["before"]["parameters"]

    cli(["eval", f"run={out}", "split=eval"], cwd=tmp_path)
    scored = json.loads(next((tmp_path / "outputs" / "eval").glob("*/*/eval.json")).read_text())
    assert scored["metrics"]["accuracy"] == pytest.approx(report["after"]["metrics"]["accuracy"])
    cli(["export", f"run={out}", "format=onnx", "verify_rows=16"], cwd=tmp_path)
    assert json.loads((out / "export" / "onnx" / "export.json").read_text())["passed"]


def test_layer_pruning_leaves_fewer_layers_that_plain_transformers_loads(cls_run, tmp_path):
    out, report = _prune(cls_run, tmp_path, "method=layers", "amount=0.5")
    assert len(report["removed"]) == 1 and report["kept"] == [1 - report["removed"][0]]
    model = transformers.AutoModelForSequenceClassification.from_pretrained(out / "checkpoints" / "best")
    assert model.config.num_hidden_layers == 1 and len(model.bert.encoder.layer) == 1
    assert report["after"]["parameters"] == sum(p.numel() for p in model.parameters())


def test_magnitude_pruning_reaches_the_asked_sparsity_and_says_it_is_not_faster(cls_run, tmp_path):
    out = tmp_path / "sparse"
    proc = cli(["prune", f"run={cls_run}", f"output={out}", "method=magnitude", "amount=0.4"], cwd=tmp_path)
    assert "no faster" in proc.stdout + proc.stderr
    report = json.loads((out / "prune.json").read_text())
    model = transformers.AutoModelForSequenceClassification.from_pretrained(out / "checkpoints" / "best")
    weights = [m.weight for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".encoder.layer." in n]
    reached = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert abs(reached - 0.4) < 0.01 and report["sparsity"]["block_linears"] == pytest.approx(reached)
    assert set(report["sparsity"]["per_layer"]) == {
        n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".encoder.layer." in n
    }


def test_bad_prune_requests_are_one_line_and_exit_2(cls_run, tmp_path):
    _fails(["prune", f"run={cls_run}", "amount=1.5"], tmp_path, "amount must be a fraction in (0, 1)")
    _fails(["prune", f"run={cls_run}", "amount=0"], tmp_path, "amount must be a fraction in (0, 1)")
    _fails(["prune", f"run={tmp_path / 'nowhere'}"], tmp_path, "run folder not found")
    _fails(
        ["prune", f"run={cls_run}", "method=heads", "amount=0.9", f"output={tmp_path / 'x'}"],
        tmp_path,
        "each of the 2 layers keeps a head",
    )


def test_heads_of_a_decoder_are_refused_naming_the_alternatives(tmp_path):
    cli(["train", *FAST, "task=sft", "model=tiny-gpt2", "task.data.max_eval_samples=8"], cwd=tmp_path)
    run = only_run_dir(tmp_path / "outputs")
    _fails(["prune", f"run={run}", "method=heads"], tmp_path, "method=layers", "gpt2")


def test_a_head_pruned_model_fine_tunes_to_recover_and_keeps_its_heads_removed(cls_run, tmp_path):
    out, report = _prune(cls_run, tmp_path, "method=heads", "amount=0.25", "importance=loss")
    assert report["importance"] == "loss" and report["heads_after"] == 3
    cli(["train", *FAST, f"model.name_or_path={out}/checkpoints/best"], cwd=tmp_path)
    best = only_run_dir(tmp_path / "outputs") / "checkpoints" / "best"
    assert json.loads((best / "config.json").read_text())["pruned_heads"] == report["pruned_heads"]
    from llmft.models.heads import load_pruned

    model, info = load_pruned(transformers.AutoModelForSequenceClassification, best)
    assert info["missing_keys"] == [] and sum(p.numel() for p in model.parameters()) == report["after"]["parameters"]


def test_removing_heads_computes_what_masking_them_did_and_survives_a_save(tmp_path):
    import copy

    from llmft.models.heads import head_gates, load_pruned, remove_heads

    config = transformers.BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_config(config).eval()
    twin = copy.deepcopy(model)
    ids = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(0))
    remove_heads(model, {0: [1, 3], 1: [0]})
    remove_heads(model, {1: [1]})  # a second cut counts positions among the heads left: original head 2
    assert model.config.pruned_heads == {"0": [1, 3], "1": [0, 2]}
    assert model.bert.encoder.layer[1].attention.self.value.out_features == 8
    gates = [torch.tensor([1.0, 0.0, 1.0, 0.0]), torch.tensor([0.0, 1.0, 0.0, 1.0])]
    with torch.no_grad(), head_gates(twin, gates):
        masked = twin(input_ids=ids).logits
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, masked, atol=1e-5)
    model.save_pretrained(tmp_path)
    loaded, info = load_pruned(transformers.AutoModelForSequenceClassification, tmp_path)
    assert info == {"missing_keys": [], "unexpected_keys": []}
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, masked, atol=1e-5)
