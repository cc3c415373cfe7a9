"""Streaming (issue #22.3): `task.data.streaming=true` trains on a file read lazily, tokenized and cut into blocks (or
packed) on the fly; a run killed with -9 resumes at the exact row and block (bitwise-equal curve); what a stream
cannot do is refused in one line."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from conftest import cli, only_run_dir, run_cli, write_jsonl
from test_resume import _start, _wait_for_step

STREAM = [
    "model=tiny-gpt2",
    "model.max_length=32",
    "task.data.streaming=true",
    "task.data.max_eval_samples=8",
    "trainer.batch_size=4",
    "trainer.progress=false",
    "trainer.log_every=1",
    "optimizer.lr=3e-3",
    "model.dropout=0.0",
]


def _text(path: Path, n: int) -> Path:
    words = ["the cat sat on the mat", "a dog ran in the park", "birds sing in the morning"]
    rows = [{"text": f"{words[i % 3]} number {i % 7}", "id": i} for i in range(n)]
    return write_jsonl(path, rows) if path.suffix != ".parquet" else _parquet(path, rows)


def _parquet(path: Path, rows: list) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=37)  # held-out rows and resumes land mid-group
    return path


def _curve(run: Path) -> list:
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r.get("train/loss"), r.get("eval/loss")) for r in records if "train/loss" in r or "eval/loss" in r]


@pytest.mark.parametrize("name", ["corpus.jsonl", "corpus.parquet"])
def test_streamed_raw_text_trains_and_the_loss_falls(tmp_path, name):
    data = _text(tmp_path / name, 400)
    proc = cli(["train", "task=textgen", *STREAM, f"task.data.path={data}", "trainer.max_steps=30"], tmp_path)
    run = only_run_dir(tmp_path / "outputs")
    plan = json.loads((run / "run.json").read_text())["plan"]
    assert plan["train_examples"] == "streamed" and "train_examples=streamed" in proc.stdout + proc.stderr
    losses = [r[1] for r in _curve(run) if r[1] is not None]
    assert len(losses) == 30 and sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    loop = (
        json.loads((run / "checkpoints" / "last" / "loop_state.json").read_text())
        if (run / "checkpoints" / "last").is_dir()
        else None
    )
    where = loop and loop["data_position"]["stream"]
    assert where is None or (where["offset"] > 0 if name.endswith(".jsonl") else where["group"] * 37 + where["row"] > 16)


@pytest.mark.parametrize("name", ["alpaca.jsonl", "alpaca.parquet"])
def test_streamed_chat_rows_pack_on_the_fly(tmp_path, name):
    rows = [{"instruction": f"Say {w}", "input": "", "output": w} for w in ["yes", "no", "maybe"] * 40]
    data = write_jsonl(tmp_path / name, rows) if name.endswith(".jsonl") else _parquet(tmp_path / name, rows)
    cli(["train", "task=sft", *STREAM, f"task.data.path={data}", "task.packing=true", "trainer.max_steps=4"], tmp_path)
    records = [json.loads(x) for x in (only_run_dir(tmp_path / "outputs") / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in records if "train/loss" in r]
    assert len(trained) == 4 and trained[-1]["train/samples_per_s"] > 0 and any("eval/loss" in r for r in records)


@pytest.mark.parametrize(
    "args, message",
    [
        (["task=textgen"], "needs trainer.max_steps"),
        (["task=sentiment", "model=tiny-bert", "trainer.max_steps=2"], "trains decoder-only (causal_lm) tasks"),
        (["task=textgen", "trainer.max_steps=2", "task.data.dedup=true"], "does not combine with task.data.dedup"),
    ],
)
def test_what_a_stream_cannot_do_is_one_line(tmp_path, args, message):
    data = _text(tmp_path / "corpus.jsonl", 60)
    proc = cli(["train", *STREAM, f"task.data.path={data}", *args], tmp_path, check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert proc.returncode == 2 and len(errors) == 1 and message in errors[0], proc.stderr


def test_a_file_a_stream_cannot_read_is_one_line(tmp_path):
    data = tmp_path / "corpus.csv"
    data.write_text("text\nthe cat sat\n" * 40)
    proc = cli(["train", "task=textgen", *STREAM, f"task.data.path={data}", "trainer.max_steps=2"], tmp_path, check=False)
    assert proc.returncode == 2 and "reads JSON Lines (.jsonl), text (.txt) or Parquet (.parquet) files" in proc.stderr


def test_a_parquet_stream_continues_at_the_row_after_its_cursor(tmp_path):
    from llmft.data import parquet_rows

    rows = list(parquet_rows.rows(str(_text(tmp_path / "corpus.parquet", 100)), parquet_rows.FIRST))
    assert [row["id"] for row, _ in rows] == list(range(100)) and rows[36][1] == {"group": 0, "row": 37}
    for k in (0, 5, 36, 37, 80, 99):  # mid-group, a group's last row, the file's last row
        assert [row["id"] for row, _ in parquet_rows.rows(str(tmp_path / "corpus.parquet"), rows[k][1])] == list(
            range(k + 1, 100)
        )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["corpus.jsonl", "corpus.parquet"])
def test_streaming_kill_9_then_resume_matches_an_unbroken_run(tmp_path, name):
    data = _text(tmp_path / name, 300)
    args = [
        "train",
        "task=textgen",
        *STREAM,
        f"task.data.path={data}",
        "trainer.max_steps=40",
        "trainer.save_every=5",
        "trainer.eval_every=10",
    ]
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    unbroken.mkdir(), broken.mkdir()
    run_cli(args, cwd=unbroken)
    proc = _start(args, cwd=broken)
    run = _wait_for_step(broken, 17, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    loop = json.loads((run / "checkpoints" / "last" / "loop_state.json").read_text())
    killed_at, where = loop["step"], loop["data_position"]["stream"]
    assert 5 <= killed_at < 40 and set(where) >= ({"group", "row"} if name.endswith(".parquet") else {"offset"})
    run_cli(["train", f"trainer.resume={run}", "trainer.progress=false"], cwd=broken)
    assert _curve(run) == _curve(only_run_dir(unbroken / "outputs"))  # bitwise: the same blocks in the same order
