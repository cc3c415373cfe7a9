"""`llmft serve backend=onnx`: a tiny-bert classifier exported by `llmft export` (fp32 and int8) answers /v1/classify
with the torch backend's labels and scores; a missing or unverified export (a decoder's too) is refused with exit 2 in
one line naming the fix; /metrics still counts. Decoders served from their export: test_serve_onnx_decoder.py."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import FAST, cli, only_run_dir

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TEXTS = ["A lovely, funny film.", "Dull.", "The plot goes nowhere and the acting is flat.", "Great fun!"]


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory) -> Path:
    """A tiny-bert classification run with its fp32 and int8 ONNX exports in <run>/export/."""
    root = tmp_path_factory.mktemp("serve_onnx")
    cli(["train", *FAST, "task.data.max_eval_samples=32"], cwd=root)
    run = only_run_dir(root / "outputs")
    cli(["export", f"run={run}", "format=onnx", "verify_rows=32"], cwd=root)
    cli(["export", f"run={run}", "format=onnx", "quantize=int8", "verify_rows=32"], cwd=root)
    return run


def _classify(served, texts: list[str]) -> list[dict]:
    """/v1/classify answered in-process (FastAPI's TestClient runs the app's lifespan: the batcher starts and stops)."""
    from fastapi.testclient import TestClient

    from llmft.serving.app import build_app

    with TestClient(build_app(served, max_batch_size=4)) as client:
        response = client.post("/v1/classify", json={"input": texts})
        assert response.status_code == 200, response.text
        assert client.post("/v1/classify", json={"input": "word " * 400}).json()["error"]["code"] == "context_length_exceeded"
        assert client.post("/v1/completions", json={"prompt": "Hi"}).json()["error"]["code"] == "unsupported_model"
        metrics = client.get("/metrics").text
    assert re.search(r'^llmft_requests_total\{route="/v1/classify",status="200"\} 1\.0$', metrics, re.M), metrics
    assert re.search(r'^llmft_request_errors_total\{route="/v1/classify",status="400"\} 1\.0$', metrics, re.M), metrics
    return response.json()["data"]


def _torch_served(run: Path):
    from llmft.commands.open_run import load_predictor
    from llmft.deploy_config import ServeConfig
    from llmft.serving.served_model import ServedModel

    task, model, tokenizer, max_length = load_predictor(ServeConfig(run=str(run)))
    return ServedModel("tiny", task, model, tokenizer, max_length, "cpu", task.cfg.generation, 4)


def _onnx_served(run: Path, export: str | None = None):
    from llmft.commands.common import load_run_config
    from llmft.config import TrainConfig
    from llmft.serving.onnx_model import load_onnx_model

    return load_onnx_model("tiny", run, load_run_config(run, TrainConfig), export)


@pytest.mark.slow  # seconds-long; the default suite stays under 10 minutes on 2 cores
def test_onnx_backend_answers_the_torch_backends_labels(exported_run):
    expected = _classify(_torch_served(exported_run), TEXTS)
    fp32 = _onnx_served(exported_run, str(exported_run / "export" / "onnx"))
    got = _classify(fp32, TEXTS)
    tolerance = json.loads((fp32.folder / "export.json").read_text())["max_abs_logit_diff"] + 1e-5
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    for g, e in zip(got, expected):  # probabilities move by less than the logits do
        assert set(g["scores"]) == set(e["scores"]) == {"negative", "positive"}
        assert all(abs(g["scores"][k] - e["scores"][k]) <= tolerance for k in e["scores"]), (g, e)

    default = _onnx_served(exported_run)  # the int8 export when there is one
    assert default.folder == exported_run / "export" / "onnx-int8"
    quantized = _classify(default, TEXTS)
    assert [q["label"] for q in quantized] == [e["label"] for e in expected]
    assert max(abs(q["score"] - e["score"]) for q, e in zip(quantized, expected)) < 0.05


def _one_line_exit_2(args: list[str], cwd: Path, *words: str) -> None:
    proc = cli(["serve", *args], cwd=cwd, check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for word in words:
        assert word in errors[0], errors[0]


def _decoder_run_folder(root: Path) -> Path:
    """A run folder holding only the saved config of a tiny-gpt2 SFT run (no export)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from llmft.cli import register_configs
    from llmft.paths import conf_dir

    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["task=sft", "model=tiny-gpt2"])
    (root / "lm" / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, root / "lm" / ".hydra" / "config.yaml")
    return root / "lm"


def test_missing_or_unverified_export_is_refused(exported_run, tmp_path):
    fix = f"llmft export run={exported_run} format=onnx"
    _one_line_exit_2([f"run={exported_run}", "backend=onnx", f"export={tmp_path / 'none'}"], tmp_path, "no ONNX export", fix)
    bad = tmp_path / "bad"
    shutil.copytree(exported_run / "export" / "onnx", bad)
    record = json.loads((bad / "export.json").read_text())
    (bad / "export.json").write_text(json.dumps({**record, "status": "disagrees", "passed": False, "agreement": 0.5}))
    _one_line_exit_2([f"run={exported_run}", "backend=onnx", f"export={bad}"], tmp_path, "did not pass its verification", fix)
    decoder = _decoder_run_folder(tmp_path)
    _one_line_exit_2([f"run={decoder}", "backend=onnx"], tmp_path, "no ONNX export", f"llmft export run={decoder} format=onnx")
    _one_line_exit_2(["model=tiny-bert", "backend=onnx"], tmp_path, "run=")
    _one_line_exit_2([f"run={exported_run}", f"export={bad}"], tmp_path, "backend=onnx")
