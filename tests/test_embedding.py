"""The embedding family (task=embedding) through the real CLI: it trains (the loss falls), its best checkpoint loads
in sentence-transformers and embeds identically, its metrics equal sentence-transformers' evaluators, `generate`
prints embeddings and similarities, bad rows are refused in one line, eval shards equal one process, and a resumed
run equals an unbroken one."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest

from conftest import cli, only_run_dir, write_jsonl

RUN = [
    "task=embedding",
    "model=tiny-bert",
    "task.data.max_train_samples=256",
    "task.data.max_eval_samples=60",
    "trainer.batch_size=16",
    "trainer.max_steps=24",
    "trainer.eval_every=12",
    "trainer.log_every=4",
    "trainer.progress=false",
    "optimizer.lr=1e-3",
    "model.dropout=0.0",
    "scheduler.warmup_ratio=0.0",
]  # no warmup: 24 steps learn
TEXTS = [
    "The doctor bought the car in the morning.",
    "A physician purchased an automobile at dawn.",
    "The kid lost the phone by the river, " * 12,
]  # the last one longer than model.max_length: both cut it alike


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("embedding")
    cli(["train", *RUN], cwd=root)
    return only_run_dir(root / "outputs")


def _sentence_transformer(folder: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu")


def _generate(run: Path, cwd: Path, prompt: str) -> dict:
    proc = cli(["generate", f"run={run}", f"prompt='{prompt}'"], cwd=cwd)  # quoted: commas
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_trains_and_the_loss_falls(run):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert losses[-1] < losses[0] * 0.9, losses
    summary = json.loads((run / "eval.json").read_text())
    assert summary["select_metric"] == "mrr@10" and {"spearman", "recall@1", "recall@5", "recall@10"} <= set(summary["metrics"])


def test_checkpoint_loads_in_sentence_transformers_and_embeds_identically(run, tmp_path):
    import torch

    model = _sentence_transformer(run / "checkpoints" / "best")
    reference = model.encode(TEXTS, convert_to_tensor=True)
    for text, vector in zip(TEXTS, reference):
        printed = _generate(run, tmp_path, text)
        assert printed["dim"] == len(printed["embedding"]) == reference.shape[1]
        assert torch.allclose(torch.tensor(printed["embedding"]), vector, atol=1e-5)
    pair = _generate(run, tmp_path, f"{TEXTS[0]} ||| {TEXTS[1]}")
    expected = float(torch.nn.functional.cosine_similarity(reference[0:1], reference[1:2]))
    assert pair["text1"] == TEXTS[0] and abs(pair["cosine_similarity"] - expected) < 1e-5
    assert (run / "checkpoints" / "last" / "modules.json").is_file()  # the resumable checkpoint loads there too


def test_metrics_equal_sentence_transformers_evaluators(run):
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator, InformationRetrievalEvaluator

    from llmft.paths import resources_dir

    rows = [json.loads(line) for line in (resources_dir() / "embedding" / "test.jsonl").read_text().splitlines()][:60]
    ours = json.loads((run / "eval.json").read_text())["metrics"]
    model = _sentence_transformer(run / "checkpoints" / "best")
    scored = [r for r in rows if r["score"] is not None]
    similarity = EmbeddingSimilarityEvaluator(
        [r["sentence1"] for r in scored], [r["sentence2"] for r in scored], [r["score"] for r in scored]
    )(model)
    pairs = [r for r in rows if r["score"] is None]
    corpus = {t: t for r in pairs for t in (r["positive"], r["negative"])}
    relevant: dict[str, set[str]] = {}
    for r in pairs:
        relevant.setdefault(r["anchor"], set()).add(r["positive"])
    retrieval = InformationRetrievalEvaluator({q: q for q in relevant}, corpus, relevant, write_csv=False)(model)

    def theirs(suffix: str) -> float:
        return next(v for k, v in {**similarity, **retrieval}.items() if k.endswith(suffix))

    assert ours["spearman"] == pytest.approx(theirs("spearman_cosine"), abs=1e-6)
    assert ours["pearson"] == pytest.approx(theirs("pearson_cosine"), abs=1e-5)
    for k in (1, 5, 10):
        assert ours[f"recall@{k}"] == pytest.approx(theirs(f"cosine_recall@{k}"), abs=1e-9)
    assert ours["mrr@10"] == pytest.approx(theirs("cosine_mrr@10"), abs=1e-9)
    assert ours["queries"] == len(relevant) and ours["corpus"] == len(corpus)


def test_eval_sharded_over_two_ranks_equals_one_process(run):
    from llmft.data.loading import load_raw, make_loader, named_splits
    from llmft.engine.precision import resolve_precision
    from llmft.models import backbone
    from llmft.commands.common import load_run_config
    from llmft.config import PrecisionMode, TrainConfig
    from llmft.tasks import get_task

    config = load_run_config(run, TrainConfig)
    folder = run / "checkpoints" / "best"
    model, tokenizer = backbone.load_finetuned("AutoModel", folder), backbone.load_finetuned_tokenizer(folder)
    task = get_task(config.task, tokenizer, 64)
    test = task.prepare({"test": named_splits(load_raw(config.task.data), config.task.data)["test"]})["test"]
    precision = resolve_precision(PrecisionMode.fp32, "cpu")

    def partial(rank: int, world: int) -> dict:
        loader = make_loader(test, 7, task.collator(tokenizer), False, 0, rank=rank, world=world, wrap=False)
        return task.eval_partial(model, loader, precision, "test")

    one = task.eval_metrics([partial(0, 1)], "test")
    two = task.eval_metrics([partial(0, 2), partial(1, 2)], "test")
    assert one.keys() == two.keys()
    for key in one:
        assert two[key] == pytest.approx(one[key], abs=1e-6), key


def test_scored_pairs_train_with_cosent_normalize_and_merged_lora(tmp_path):
    import torch

    words = ["red", "blue", "green", "cat", "dog", "house", "tree", "car", "sun", "moon"]
    rows = [
        {"sentence1": f"the {a} {b}", "sentence2": f"a {b} {a}", "score": (i % 5) / 4}
        for i, (a, b) in enumerate((a, b) for a in words for b in words if a != b)
    ]
    data = write_jsonl(tmp_path / "sts.jsonl", rows)
    cli(
        [
            "train",
            "task=embedding",
            "model=tiny-bert",
            f"task.data.path={data}",
            "task.select_metric=spearman",
            "task.normalize=true",
            "finetune=lora",
            "trainer.max_steps=4",
            "trainer.batch_size=16",
            "trainer.progress=false",
        ],
        cwd=tmp_path,
    )
    run = only_run_dir(tmp_path / "outputs")
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["plan"]["data"]["train"]["scored"] > 0 and manifest["plan"]["data"]["train"]["pairs"] == 0
    assert math.isfinite(json.loads((run / "eval.json").read_text())["metrics"]["spearman"])
    model = _sentence_transformer(run / "checkpoints" / "best")
    assert "Normalize" in str(model)
    vector = torch.tensor(_generate(run, tmp_path, TEXTS[0])["embedding"])
    assert torch.allclose(vector, model.encode([TEXTS[0]], convert_to_tensor=True)[0], atol=1e-5)
    assert abs(float(vector.norm()) - 1.0) < 1e-5
    proc = cli(
        ["train", "task=embedding", "model=tiny-bert", f"task.data.path={data}", "task.loss=mnrl"], cwd=tmp_path, check=False
    )
    assert proc.returncode == 2 and "task.loss=mnrl cannot train on the scored pairs" in proc.stderr


@pytest.mark.parametrize(
    "row, message",
    [
        ({"query": "a", "doc": "b"}, "has neither pair columns ['anchor', 'positive'] nor scored columns"),
        ({"anchor": "a cat", "positive": "  "}, "has an empty 'positive'"),
        ({"sentence1": "a cat", "sentence2": "a dog", "score": "high"}, "has a non-numeric score 'score' = 'high'"),
    ],
)
def test_bad_rows_exit_2_in_one_line(tmp_path, row, message):
    good = {key: (f"text {i}" if key != "score" else 0.5) for i, key in enumerate(row)}
    data = write_jsonl(tmp_path / "data.jsonl", [good] * 5 + [row] + [good] * 5)
    proc = cli(
        ["train", "task=embedding", "model=tiny-bert", f"task.data.path={data}", "trainer.max_steps=1"], cwd=tmp_path, check=False
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_select_metric_the_eval_split_cannot_give_is_refused_before_training(tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", [{"anchor": f"a {i}", "positive": f"b {i}"} for i in range(20)])
    proc = cli(
        ["train", "task=embedding", "model=tiny-bert", f"task.data.path={data}", "task.select_metric=spearman"],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2 and "the eval split has no scored pairs; choose one of: mrr@10" in proc.stderr


@pytest.mark.slow  # seconds-long; the default suite stays under 10 minutes on 2 cores
def test_resume_after_a_stop_equals_an_unbroken_run(tmp_path, monkeypatch):
    import llmft.engine.loop as loop

    args = [*RUN[:-1], "trainer.max_steps=12", "trainer.eval_every=4", "trainer.log_every=1"]  # dropout on: RNG restored
    (tmp_path / "unbroken").mkdir(), (tmp_path / "broken").mkdir()
    cli(["train", *args], cwd=tmp_path / "unbroken")
    step = loop.optimizer_step

    def stop_after_step_5(parts, group, state):
        loss = step(parts, group, state)
        if state.step == 4:  # the loop counts this step next, then stops with a checkpoint saved
            os.kill(os.getpid(), signal.SIGINT)
        return loss

    monkeypatch.setattr(loop, "optimizer_step", stop_after_step_5)
    proc = cli(["train", *args], cwd=tmp_path / "broken", check=False)
    assert proc.returncode == 130, proc.stderr[-2000:]
    monkeypatch.setattr(loop, "optimizer_step", step)
    broken = only_run_dir(tmp_path / "broken" / "outputs")
    cli(["train", f"trainer.resume={broken}", "trainer.progress=false"], cwd=tmp_path / "broken")

    def curve(run: Path) -> list:
        records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if "per_s" not in k} for r in records]

    assert curve(broken) == curve(only_run_dir(tmp_path / "unbroken" / "outputs"))


@pytest.mark.slow  # a torchrun job (2 CPU processes, gloo)
def test_torchrun_sharded_test_metrics_equal_one_process_eval_of_the_same_checkpoint(tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    args = [*RUN, "trainer.max_steps=4", "trainer.eval_every=2", "trainer.eval_batch_size=7"]
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "llmft", "train", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run_dir(tmp_path / "outputs")
    sharded = json.loads((run / "eval.json").read_text())["metrics"]
    cli(["eval", f"run={run}", "split=test", "hydra.run.dir=one"], cwd=tmp_path)
    single = json.loads((tmp_path / "one" / "eval.json").read_text())["metrics"]
    assert sharded.keys() == single.keys()
    for key in sharded:
        assert sharded[key] == pytest.approx(single[key], abs=1e-6), key
