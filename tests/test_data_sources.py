"""Several data sets in one run (issue #22.2): `task.data.sources` mixed by weight or by row counts, seeded; the plan
says what each source gave; eval and test are scored per source as well as overall; bad specs are one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import FAST, cli, only_run_dir, write_jsonl

SFT = [
    "task=sft",
    "model=tiny-gpt2",
    "trainer.max_steps=1",
    "trainer.batch_size=4",
    "trainer.progress=false",
    "task.eval_generate_samples=2",
]


def _alpaca(path: Path, n: int, word: str) -> Path:
    write_jsonl(path, [{"instruction": f"Say {word} {i}", "input": "", "output": f"{word} {i}"} for i in range(n)])
    return path


def _sentiment(path: Path, n: int, offset: int) -> Path:
    write_jsonl(
        path, [{"text": f"{'good great' if i % 2 else 'bad awful'} movie {i + offset}", "label": i % 2} for i in range(n)]
    )
    return path


def _run(tmp_path: Path) -> Path:
    return only_run_dir(tmp_path / "outputs")


def _sources(*specs: str) -> str:
    return "task.data.sources=[" + ",".join("{" + s + "}" for s in specs) + "]"


def test_mix_by_rows_takes_the_asked_rows_of_each_source_and_scores_each(tmp_path):
    new, old = _alpaca(tmp_path / "new.jsonl", 40, "new"), _alpaca(tmp_path / "old.jsonl", 10, "old")
    proc = cli(["train", *SFT, _sources(f"path:{new},rows:24", f"path:{old},rows:16,name:replay")], tmp_path)
    run = _run(tmp_path)
    sources = json.loads((run / "run.json").read_text())["plan"]["sources"]
    assert [(s["name"], s["rows"]) for s in sources] == [("new", 24), ("replay", 16)]  # 16 > 10 rows: old repeats
    assert all(s["tokens"] > 0 for s in sources)
    assert "source replay" in proc.stderr and "16 train rows" in proc.stderr  # the plan, on the console
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "eval/loss" in line]
    assert {"eval/loss", "eval/new/loss", "eval/replay/loss", "eval/new/perplexity"} <= set(evals[-1])
    test = json.loads((run / "eval.json").read_text())["metrics"]
    assert {"loss", "new/loss", "replay/loss"} <= set(test)


def test_mix_by_weight_is_seeded_and_follows_the_weights(tmp_path):
    a, b = _sentiment(tmp_path / "a.jsonl", 200, 0), _sentiment(tmp_path / "b.jsonl", 200, 1000)
    mix = _sources(f"path:{a},weight:3", f"path:{b},weight:1")
    counts = []
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        cli(["train", *FAST, "task=sentiment", mix, "trainer.eval_every=1"], tmp_path / folder)
        plan = json.loads((_run(tmp_path / folder) / "run.json").read_text())["plan"]
        counts.append([(s["name"], s["rows"], s["tokens"]) for s in plan["sources"]])
    assert counts[0] == counts[1]  # seeded: the same mix twice
    (_, rows_a, _), (_, rows_b, _) = counts[0]
    assert rows_b < rows_a and 2.0 < rows_a / rows_b < 4.5  # 3:1, until a runs out (its 180 train rows)
    evals = [
        json.loads(line) for line in (_run(tmp_path / "one") / "metrics.jsonl").read_text().splitlines() if "eval/loss" in line
    ]
    assert {"eval/accuracy", "eval/a/loss", "eval/a/accuracy", "eval/b/loss", "eval/b/accuracy"} <= set(evals[-1])


@pytest.mark.parametrize(
    "spec, message",
    [
        (["path:{a},weight:1,rows:5"], "has both weight and rows"),
        (["weight:1"], "has no path"),
        (["path:{a},wieght:1"], "unknown key 'wieght' (did you mean 'weight'?)"),
        (["path:{a},weight:1", "path:{a},rows:5,name:b"], "give every source a weight, or every source rows"),
        (["path:{a},weight:-1"], "weight must be a number > 0"),
        (["path:{a}", "path:{a}"], "two sources are named 'a'"),
    ],
)
def test_bad_source_specs_are_one_line(tmp_path, spec, message):
    a = _sentiment(tmp_path / "a.jsonl", 20, 0)
    proc = cli(["train", *FAST, "task=sentiment", _sources(*(s.format(a=a) for s in spec))], tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error")]
    assert len(lines) == 1 and message in lines[0], proc.stderr
