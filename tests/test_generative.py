"""Generative task families end to end through the CLI on tiny models: the loss falls, the metric is
computed and written, and `llmft generate` on the run produces output."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from conftest import only_run_dir, cli, write_jsonl

COMMON = ["trainer.progress=false", "task.data.max_eval_samples=32", "trainer.log_every=5"]
GENERATIVE = ["task.eval_generate_samples=16"]  # an option of the generative families only (per-family schemas)


def _train(tmp_path: Path, *args: str) -> Path:
    generative = "task=qa" not in args
    cli(["train", *COMMON, *(GENERATIVE if generative else []), *args], cwd=tmp_path)
    return only_run_dir(tmp_path / "outputs")


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _loss_falls(run: Path) -> None:
    losses = [r["train/loss"] for r in _records(run) if "train/loss" in r]
    assert losses[-1] < losses[0] - 0.3, losses


def _echo_data(folder: Path) -> Path:
    """Templated instructions a tiny model can learn in a few hundred steps: repeat 2-4 words (held-out combos)."""
    rng = random.Random(0)
    words = "red blue green fox dog cat tree river stone cloud rain sun moon star bird fish apple bread milk salt".split()
    seen: set[str] = set()

    def rows(n: int, exclude: set[str]) -> list[dict]:
        out = []
        while len(out) < n:
            key = " ".join(rng.sample(words, rng.randint(2, 4)))
            if key not in exclude:
                out.append({"prompt": f"Repeat the words: {key}", "response": key})
        return out

    train = rows(2000, set())
    seen = {r["response"] for r in train}
    held_out = rows(120, seen)
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", train)
    write_jsonl(folder / "validation.jsonl", held_out[:60])
    write_jsonl(folder / "test.jsonl", held_out[60:])
    return folder


def test_sft_learns_held_out_instructions(tmp_path):
    data = _echo_data(tmp_path / "echo")
    run = _train(
        tmp_path,
        "task=sft",
        f"task.data.path={data}",
        "model=tiny-gpt2",
        "optimizer.lr=3e-3",
        "trainer.epochs=3",
        "trainer.eval_every=40",
        "task.generation.max_new_tokens=12",
        "task.data.max_eval_samples=60",
        "task.eval_generate_samples=60",
    )
    _loss_falls(run)
    em = [r["eval/exact_match"] for r in _records(run) if "eval/exact_match" in r]
    assert em[0] <= 5.0 and max(em) >= 15.0, em  # an untrained model repeats nothing; the tuned one does
    result = json.loads((run / "eval.json").read_text())
    assert result["select_metric"] == "exact_match" and "perplexity" in result["metrics"]
    samples = [json.loads(x) for x in (run / "generations-test.jsonl").read_text().splitlines()]
    assert samples and {"input", "reference", "prediction"} <= set(samples[0])

    out = cli(["generate", f"run={run}", "prompt=Repeat the words: sun moon"], cwd=tmp_path).stdout
    assert out.strip()
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "Repeat the words: red fox"}, {"prompt": "Repeat the words: milk"}])
    cli(["generate", f"run={run}", f"input={inputs}", f"output={tmp_path / 'out.jsonl'}", "generation.num_beams=2"], cwd=tmp_path)
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all("generation" in r for r in rows)


@pytest.mark.parametrize(
    "task, model, metric",
    [
        ("textgen", "tiny-gpt2", "perplexity"),
        ("chat", "tiny-gpt2", "perplexity"),
        ("summarization", "tiny-t5", "rougeL"),
        ("translation", "tiny-t5", "bleu"),
        ("generative-qa", "tiny-gpt2", "f1"),
        ("qa", "tiny-bert", "f1"),
    ],
)
def test_family_trains_scores_and_generates(tmp_path, task, model, metric):
    run = _train(
        tmp_path,
        f"task={task}",
        f"model={model}",
        "optimizer.lr=3e-3",
        "trainer.max_steps=40",
        "trainer.batch_size=16",
        "task.data.max_train_samples=640",
        "task.generation.max_new_tokens=16",
        "model.max_length=128",
    )
    _loss_falls(run)
    result = json.loads((run / "eval.json").read_text())
    assert metric in result["metrics"] and result["select_metric"] in result["metrics"]
    if task in ("summarization", "translation", "generative-qa", "qa"):
        assert (run / "generations-test.jsonl").is_file()
    if task == "qa":
        rows = [{"question": "Where was Emil born?", "context": "Emil Ambler was born in Kelport in 1970."}]
        out = cli(["generate", f"run={run}", f"input={write_jsonl(tmp_path / 'q.jsonl', rows)}"], cwd=tmp_path).stdout
        answer = json.loads(out.strip().splitlines()[-1])["answer"]
        assert answer == "" or answer in rows[0]["context"]  # a span of the context, or no answer
        return
    if task == "generative-qa":  # a two-field template: rows name both fields (test_generate_template.py)
        rows = [{"context": "Emil Ambler was born in Kelport.", "question": "Who?"}]
        out = cli(["generate", f"run={run}", f"input={write_jsonl(tmp_path / 'q.jsonl', rows)}"], cwd=tmp_path)
        assert "generation" in json.loads(out.stdout.strip().splitlines()[-1])
        return
    prompt = {
        "textgen": "Belbrook is",
        "chat": "What is 2 + 3?",
        "summarization": "Mayor Ana Fox opened a bridge in Pelport.",
        "translation": "The dog ran.",
    }[task]
    out = cli(["generate", f"run={run}", f"prompt={prompt}", "generation.max_new_tokens=8"], cwd=tmp_path)
    assert out.returncode == 0
    if task == "textgen":
        inputs = write_jsonl(tmp_path / "in.jsonl", [{"text": "Torfield is"}])
        cli(
            [
                "generate",
                f"run={run}",
                f"input={inputs}",
                f"output={tmp_path / 'o.jsonl'}",
                "generation.do_sample=true",
                "generation.temperature=0.8",
                "generation.top_k=20",
                "generation.top_p=0.9",
                "generation.stop=[.]",
            ],
            cwd=tmp_path,
        )
        row = json.loads((tmp_path / "o.jsonl").read_text())
        assert "." not in row["generation"]  # cut at the stop string


def test_eval_verb_on_a_generative_run(tmp_path):
    run = _train(tmp_path, "task=translation", "model=tiny-t5", "trainer.max_steps=5", "task.data.max_train_samples=64")
    cli(["eval", f"run={run}", "split=validation", f"hydra.run.dir={tmp_path / 'ev'}"], cwd=tmp_path)
    metrics = json.loads((tmp_path / "ev" / "eval.json").read_text())["metrics"]
    assert {"bleu", "chrf", "loss", "perplexity"} <= set(metrics)


def test_no_supervised_token_is_refused(tmp_path):
    proc = cli(
        [
            "train",
            *COMMON,
            "task=sft",
            "model=tiny-gpt2",
            "model.max_length=4",
            "task.truncation_side=right",
            "trainer.max_steps=1",
        ],
        cwd=tmp_path,
        check=False,
    )  # right: keeps prompts only
    assert proc.returncode == 2 and "no token of the train split is supervised" in proc.stderr
