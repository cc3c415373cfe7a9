"""Files as users have them: GLUE-style TSV (no quoting), RFC 4180 CSV, split folders with `dev`/`val` files, and
data shapes a task cannot take (list-valued columns, multiple choice given to a classifier)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import FAST, cli, only_run_dir, write_jsonl
from llmft.config import DataConfig
from llmft.data.loading import load_raw, named_splits
from llmft.errors import UserError

MRPC_HEADER = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
MRPC_COLUMNS = ['task.data.text_columns=["#1 String","#2 String"]', "task.data.label_column=Quality"]


def _mrpc_tsv(path: Path, n: int, start: int = 0) -> Path:
    """GLUE MRPC layout, written as GLUE writes it: tab-separated, no quoting; some fields start or end with `"`."""
    lines = [MRPC_HEADER]
    for i in range(start, start + n):
        first = {0: f'"Yes," he said of deal {i}.', 1: f'"We are done {i}, he said.'}.get(
            i % 5, f"The company reported {i} sales."
        )
        second = f'It ended with "quotes {i}"' if i % 7 == 0 else f"Sales were {i}."
        lines.append(f"{i % 2}\t{2 * i}\t{2 * i + 1}\t{first}\t{second}\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _rows_reported(run: Path) -> dict[str, int]:
    plan = json.loads((run / "run.json").read_text())["plan"]
    return {role: stats["rows"] for role, stats in plan["data"].items()}


def _fails(args: list[str], cwd: Path, *messages: str) -> str:
    proc = cli(args, cwd=cwd, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for message in messages:
        assert message in proc.stderr, proc.stderr[-3000:]
    return proc.stderr


# --- item 2: rows in = rows out ------------------------------------------------------------------------------------
def test_glue_tsv_with_a_leading_quote_keeps_every_row(tmp_path):
    data = _mrpc_tsv(tmp_path / "mrpc.tsv", 40)
    cli(["train", "task=classification", f"task.data.path={data}", *MRPC_COLUMNS, *FAST], cwd=tmp_path)
    rows = _rows_reported(only_run_dir(tmp_path / "outputs"))
    assert sum(rows.values()) == 40, rows  # 40 rows in, 40 rows trained on and scored (a stray quote swallowed lines)
    splits = named_splits(load_raw(DataConfig(path=str(data))), DataConfig())
    texts = [t for ds in splits.values() for t in ds["#1 String"]]
    assert '"Yes," he said of deal 0.' in texts and not any("\n" in t or "\t" in t for t in texts)


def test_a_line_that_cannot_be_read_is_named(tmp_path):
    data = _mrpc_tsv(tmp_path / "mrpc.tsv", 30)
    lines = data.read_text().splitlines(keepends=True)
    lines[8] = lines[8].rstrip("\n") + "\tan extra field\n"  # a tab inside a text: line 9 has six fields
    data.write_text("".join(lines))
    _fails(
        ["train", "task=classification", f"task.data.path={data}", *MRPC_COLUMNS, *FAST],
        tmp_path,
        f"{data}, line 9",
        "6 fields",
        "5",
    )


def test_csv_is_read_as_rfc4180_and_options_override(tmp_path):
    csv_file = tmp_path / "data.csv"
    csv_file.write_text('text,label\n"a, quoted ""text""\nover two lines",pos\nplain,neg\nNA,pos\n', encoding="utf-8")
    train = load_raw(DataConfig(path=str(csv_file)))["train"]
    assert train["text"] == ['a, quoted "text"\nover two lines', "plain", "NA"]  # "NA" is a text, not a missing value
    odd = tmp_path / "data_semicolon.csv"
    odd.write_text('text;label\n"quoted;pos\nplain;neg\n', encoding="utf-8")
    train = load_raw(DataConfig(path=str(odd), delimiter=";", quoting="none"))["train"]
    assert train["text"] == ['"quoted', "plain"] and train["label"] == ["pos", "neg"]
    tab = load_raw(DataConfig(path=str(_mrpc_tsv(tmp_path / "m.csv", 5)), delimiter="tab"))["train"]
    assert len(tab) == 5 and tab["#1 String"][0] == '"Yes," he said of deal 0.'  # tab-separated: no quoting, whatever the name
    bad = tmp_path / "bad.csv"
    bad.write_text('text,label\nfine,pos\n"Yes," he said,neg\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.csv, line 3: .*quote"):
        load_raw(DataConfig(path=str(bad)))


# --- item 3: folder mode ---------------------------------------------------------------------------------------------
def test_folder_uses_dev_as_validation_and_names_unused_files(tmp_path):
    folder = tmp_path / "MRPC"
    folder.mkdir()
    _mrpc_tsv(folder / "train.tsv", 40)
    _mrpc_tsv(folder / "dev.tsv", 7, start=100)
    _mrpc_tsv(folder / "dev_ids.tsv", 3)
    (folder / "README.md").write_text("MRPC\n")
    unlabeled = _mrpc_tsv(folder / "test.tsv", 5, start=200).read_text().replace("Quality\t", "Index\t", 1)
    (folder / "test.tsv").write_text(unlabeled)  # GLUE's test.tsv carries no labels
    proc = cli(["train", "task=classification", f"task.data.path={folder}", *MRPC_COLUMNS, *FAST], cwd=tmp_path)
    rows = _rows_reported(only_run_dir(tmp_path / "outputs"))
    assert rows["eval"] == 7 and rows["train"] + rows["test"] == 40, rows  # dev.tsv is validation; test carved from train
    warnings = [line for line in proc.stderr.splitlines() if "not used" in line]
    assert len(warnings) == 1 and "README.md" in warnings[0] and "dev_ids.tsv" in warnings[0], proc.stderr[-2000:]
    assert "test.tsv has no 'Quality' column" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize(
    ("name", "suffix"), [("val", ".json"), ("valid", ".jsonl"), ("validation", ".csv"), ("eval", ".parquet"), ("dev", ".tsv")]
)
def test_common_split_names_in_every_format(tmp_path, name, suffix):
    import pandas as pd

    for split, n in (("train", 20), (name, 6), ("test", 5)):
        frame = pd.DataFrame(
            {"text": [f"{split} row {i}" for i in range(n)], "label": ["pos", "neg"] * (n // 2) + ["pos"] * (n % 2)}
        )
        path = tmp_path / f"{split}{suffix}"
        {
            ".json": lambda p: frame.to_json(p, orient="records"),
            ".jsonl": lambda p: frame.to_json(p, orient="records", lines=True),
            ".csv": lambda p: frame.to_csv(p, index=False),
            ".tsv": lambda p: frame.to_csv(p, sep="\t", index=False),
            ".parquet": lambda p: frame.to_parquet(p),
        }[suffix](path)
    cfg = DataConfig(path=str(tmp_path))
    splits = named_splits(load_raw(cfg), cfg)
    assert {role: len(ds) for role, ds in splits.items()} == {"train": 20, "eval": 6, "test": 5}


def test_two_files_for_one_split_are_refused(tmp_path):
    for name in ("train", "dev", "val"):
        write_jsonl(tmp_path / f"{name}.jsonl", [{"text": "a", "label": "pos"}] * 4)
    with pytest.raises(UserError, match=r"dev.jsonl.*val.jsonl.*validation"):
        load_raw(DataConfig(path=str(tmp_path)))


# --- item 6: shapes a task cannot take ---------------------------------------------------------------------------------
def test_list_valued_text_column_is_named(tmp_path):
    rows = [{"tokens": ["EU", "rejects", "German", "call", str(i)], "label": i % 2} for i in range(30)]
    data = write_jsonl(tmp_path / "ner.jsonl", rows)
    stderr = _fails(
        ["train", "task=classification", f"task.data.path={data}", "task.data.text_columns=[tokens]", *FAST],
        tmp_path,
        "column 'tokens'",
        "list",
    )
    assert "pyarrow" not in stderr and len([line for line in stderr.splitlines() if line.strip()]) == 1, stderr


def test_multiple_choice_data_is_refused_by_the_classifier(tmp_path):
    swag = [
        {
            "sent1": f"He opens the door {i}.",
            "sent2": "He",
            **{f"ending{k}": f"ending {k} of {i}" for k in range(4)},
            "label": i % 4,
        }
        for i in range(30)
    ]
    data = write_jsonl(tmp_path / "swag.jsonl", swag)
    _fails(
        ["train", "task=classification", f"task.data.path={data}", "task.data.text_columns=[sent1,ending0]", *FAST],
        tmp_path,
        "multiple choice",
        "ending0",
    )
    arc = [{"question": f"Which is {i}?", "choices": ["a", "b", "c", "d"], "answer": i % 4} for i in range(30)]
    data = write_jsonl(tmp_path / "arc.jsonl", arc)
    _fails(
        [
            "train",
            "task=classification",
            f"task.data.path={data}",
            "task.data.text_columns=[question]",
            "task.data.label_column=answer",
            *FAST,
        ],
        tmp_path,
        "multiple choice",
        "choices",
    )
