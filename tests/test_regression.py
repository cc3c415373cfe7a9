"""Sentence-pair regression (task=sts / task=regression): trains through the real CLI on GLUE STS-B's TSV layout,
saves a 1-output regression head that transformers loads, `llmft generate` prints scores, the metrics equal scipy's,
and a score that is not a number is one line naming its row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import cli, only_run_dir, write_jsonl

STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
WORDS = "cat dog bird runs sits sleeps red blue big small park house".split()


def _stsb_folder(folder: Path, bad_score: str | None = None) -> Path:
    """A folder like GLUE's STS-B: train.tsv and dev.tsv, ten columns, quotes as text, an unlabeled test.tsv."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for split, n in (("train", 48), ("dev", 16)):
        lines = [STSB_HEADER]
        for i in range(n):
            a, b = (" ".join(rng.choice(WORDS, 5)) for _ in range(2))
            score = f"{rng.uniform(0, 5):.3f}"
            if split == "train" and i == 2 and bad_score is not None:
                score = bad_score
            if split == "train" and i == 5:
                b = " "  # an empty text: dropped and counted, as classification does
            lines.append(f'{i}\tmain-captions\tMSRvid\t2012test\t{i:04d}\tnone\tnone\tA "{a}".\t{b}\t{score}\n')
        (folder / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")
    (folder / "test.tsv").write_text("index\tsentence1\tsentence2\n0\ta b\tc d\n", encoding="utf-8")
    return folder


ARGS = [
    "task=regression",
    "task.data.text_columns=[sentence1,sentence2]",
    "model=tiny-bert",
    "model.dropout=0.0",
    "trainer.batch_size=8",
    "trainer.max_steps=6",
    "trainer.eval_every=3",
    "trainer.progress=false",
    "optimizer.lr=1e-3",
]


@pytest.fixture(scope="module")
def stsb_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stsb")
    data = _stsb_folder(root / "stsb")
    cli(["train", *ARGS, f"task.data.path={data}"], cwd=root)
    return only_run_dir(root / "outputs")


def test_stsb_tsv_trains_and_saves_a_regression_head(stsb_run):
    run = json.loads((stsb_run / "run.json").read_text())
    assert (
        run["plan"]["data"]["train"]["dropped_empty"] == 1
    )  # the blank sentence2 (test is carved from train: GLUE ships it unlabeled)
    test = json.loads((stsb_run / "eval.json").read_text())["metrics"]
    assert {"pearson", "spearman", "mse", "loss", "samples"} <= set(test)
    evals = [json.loads(x) for x in (stsb_run / "metrics.jsonl").read_text().splitlines() if "eval/pearson" in x]
    assert len(evals) == 2 and all(-1 <= e["eval/pearson"] <= 1 for e in evals)
    chosen = json.loads((stsb_run / "eval.json").read_text())
    assert chosen["select_metric"] == "pearson" and chosen["select_mode"] == "max"  # the best checkpoint by Pearson
    assert chosen["best_step"] == max(evals, key=lambda e: e["eval/pearson"])["step"]
    from transformers import AutoConfig, AutoModelForSequenceClassification

    best = stsb_run / "checkpoints" / "best"
    config = AutoConfig.from_pretrained(best)
    assert config.problem_type == "regression" and config.num_labels == 1
    model = AutoModelForSequenceClassification.from_pretrained(best)
    assert model.classifier.out_features == 1


def test_generate_prints_a_score_per_pair(stsb_run, tmp_path):
    rows = [{"sentence1": "A cat sits.", "sentence2": "A dog sits."}, {"sentence1": "red house", "sentence2": "blue bird"}]
    out = cli(["generate", f"run={stsb_run}", f"input={write_jsonl(tmp_path / 'pairs.jsonl', rows)}"], cwd=tmp_path).stdout
    printed = [json.loads(x) for x in out.splitlines()]
    assert [p["sentence1"] for p in printed] == ["A cat sits.", "red house"]
    assert all(isinstance(p["score"], float) for p in printed)
    refused = cli(["generate", f"run={stsb_run}", "prompt=one text"], cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "input=<file.jsonl>" in refused.stderr


def test_metrics_equal_scipy_over_gathered_shards():
    from scipy import stats

    from llmft.tasks import get_task
    from llmft.config import TaskConfig

    task = get_task(TaskConfig(family="regression", select_metric="pearson"))
    y = np.array([0.0, 1.0, 2.5, 4.0, 5.0, 3.0, 3.0])
    p = np.array([0.3, 0.9, 2.0, 4.4, 3.9, 3.1, 2.0])
    shards = [{"labels": [y[:3]], "predictions": [p[:3]]}, {"labels": [y[3:5], y[5:]], "predictions": [p[3:5], p[5:]]}]
    metrics = task.eval_metrics(shards)
    assert metrics["pearson"] == pytest.approx(stats.pearsonr(y, p)[0], abs=1e-12)
    assert metrics["spearman"] == pytest.approx(stats.spearmanr(y, p)[0], abs=1e-12)  # ties averaged, as scipy
    assert metrics["mse"] == pytest.approx(np.mean((y - p) ** 2)) and metrics["loss"] == metrics["mse"]
    assert metrics["samples"] == 7
    flat = task.eval_metrics([{"labels": [y], "predictions": [np.full(7, 2.0)]}])
    assert flat["pearson"] == 0.0 and flat["spearman"] == 0.0  # a constant prediction: undefined, counted as 0


def test_a_score_that_is_not_a_number_is_one_line_naming_its_row(tmp_path):
    data = _stsb_folder(tmp_path / "stsb", bad_score="n/a")
    proc = cli(["train", *ARGS, f"task.data.path={data}"], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "'n/a'" in proc.stderr and "row 3 of" in proc.stderr and "train.tsv" in proc.stderr
    assert len([x for x in proc.stderr.strip().splitlines() if not x.startswith("warning:")]) == 1  # (test.tsv unlabeled)


def test_bundled_sts_pairs_are_graded_and_not_solved_by_word_overlap():
    from scipy import stats

    from llmft.paths import resources_dir

    rows = [json.loads(x) for x in (resources_dir() / "sts" / "test.jsonl").read_text().splitlines()]
    scores = np.array([r["score"] for r in rows])
    assert len(rows) == 1000 and scores.min() >= 0 and scores.max() <= 5
    assert np.histogram(scores, bins=5, range=(0, 5))[0].min() > 50  # every band of the 0-5 scale is there
    overlap = [len(set(r["sentence1"].lower().split()) & set(r["sentence2"].lower().split())) for r in rows]
    assert stats.spearmanr(scores, overlap)[0] < 0.3


def stopped_and_resumed_equals_unbroken(args: list[str], tmp_path: Path, monkeypatch) -> dict:
    """A run stopped by SIGTERM during step 3 and resumed logs what an unbroken run logs; returns the final metrics."""
    import signal

    import llmft.engine.loop as loop

    args = ["train", *args, "trainer.log_every=1", "trainer.eval_every=3", "trainer.progress=false"]
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    unbroken.mkdir(), broken.mkdir()
    cli(args, cwd=unbroken)
    step = loop.optimizer_step

    def step_then_term(parts, group, state):
        out = step(parts, group, state)
        if state.step == 2:
            signal.raise_signal(signal.SIGTERM)
        return out

    monkeypatch.setattr(loop, "optimizer_step", step_then_term)
    assert cli(args, cwd=broken, check=False).returncode == 128 + signal.SIGTERM
    monkeypatch.undo()
    run = only_run_dir(broken / "outputs")
    cli(["train", f"trainer.resume={run}", "trainer.progress=false"], cwd=broken)

    def records(folder):
        return [
            {k: v for k, v in json.loads(line).items() if not k.endswith("per_s") and "time" not in k}
            for line in (folder / "metrics.jsonl").read_text().splitlines()
        ]

    reference = only_run_dir(unbroken / "outputs")
    assert records(run) == records(reference)
    ours, theirs = (json.loads((r / "eval.json").read_text())["metrics"] for r in (run, reference))
    assert ours == theirs
    return ours


def sharded_eval_equals_one_process(args: list[str], keys: list[str], tmp_path: Path) -> None:
    """2 torchrun processes (gloo) each score a shard of eval/test; the gathered metrics equal one process's."""
    from test_distributed import _torchrun

    args = [
        *args,
        "model.dropout=0.0",
        "trainer.max_steps=2",
        "trainer.eval_every=1",
        "trainer.progress=false",
        "trainer.eval_batch_size=8",
        "optimizer.lr=1e-7",
    ]  # (nearly) the same weights in both: the evaluation is compared
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    single.mkdir(), ddp.mkdir()
    cli(["train", *args, "trainer.batch_size=8"], cwd=single)
    proc = _torchrun([*args, "trainer.batch_size=4"], ddp)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-3000:]
    one, two = only_run_dir(single / "outputs"), only_run_dir(ddp / "outputs")
    evals = [
        [json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines() if f"eval/{keys[0]}" in x] for r in (one, two)
    ]
    assert len(evals[0]) == len(evals[1]) == 2
    for a, b in zip(*evals):
        assert b["eval/samples"] == a["eval/samples"] == 37  # every row once: uneven shards are not padded
        for key in keys:
            assert b[f"eval/{key}"] == pytest.approx(a[f"eval/{key}"], abs=1e-5)
    m1, m2 = (json.loads((r / "eval.json").read_text())["metrics"] for r in (one, two))
    assert m2["samples"] == m1["samples"] and all(m2[k] == pytest.approx(m1[k], abs=1e-5) for k in keys)


STS = [
    "task=sts",
    "model=tiny-bert",
    "task.data.max_train_samples=64",
    "task.data.max_eval_samples=37",
    "trainer.batch_size=8",
    "optimizer.lr=1e-3",
]


@pytest.mark.slow  # ~8 s; resume is exercised per family in the slow suite, for every loop in the default one
def test_sts_stopped_and_resumed_equals_an_unbroken_run(tmp_path, monkeypatch):
    metrics = stopped_and_resumed_equals_unbroken([*STS, "trainer.max_steps=6"], tmp_path, monkeypatch)
    assert {"pearson", "spearman", "mse"} <= set(metrics)


@pytest.mark.slow  # a torchrun job
def test_sts_sharded_evaluation_equals_one_process(tmp_path):
    sharded_eval_equals_one_process(STS[:4], ["pearson", "spearman", "mse", "loss"], tmp_path)


def test_a_one_output_head_classifies_to_its_raw_score_not_a_softmax():
    """`/v1/classify` and the ONNX backend read heads through classify_with: a regression head's value is its score
    (a softmax over one output would always say 1.0)."""
    import numpy as np
    from transformers import AutoTokenizer

    from llmft.models.builtin import minilm_path
    from llmft.inference.classify import classify_with

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())  # the tokenizer tiny-bert uses
    out = classify_with(lambda enc: np.array([[2.5], [-0.75]]), {0: "LABEL_0"}, tokenizer, [["a"], ["b c"]], 8, 16)
    assert [r["score"] for r in out] == [2.5, -0.75] and all(r["label"] == "LABEL_0" for r in out)
