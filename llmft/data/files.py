"""Local data files read faithfully: CSV/TSV dialects (rows in = rows out, or the line at fault is named) and the
split files of a data folder under their common names (train, dev/val/valid/validation/eval, test)."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import Any, Iterable

from llmft.config import DataConfig, Quoting
from llmft.errors import UserError

# names a folder's file may carry for each split besides the configured one (GLUE: dev.tsv; many repos: val.json)
SPLIT_ALIASES = {"validation": ("validation", "dev", "val", "valid", "eval"), "test": ("test",)}
# CoNLL-2003's own file names (eng.train, eng.testa, eng.testb; deu.* for German): name endings -> split roles
CONLL2003_ENDINGS = {".train": "train", ".testa": "eval", ".testb": "test"}


def delimiter_of(file: str, cfg: DataConfig) -> str:
    """The configured delimiter (`tab` or `\\t` for a tab), else tab for .tsv and comma for the rest."""
    if cfg.delimiter is not None:
        return "\t" if cfg.delimiter in ("tab", "\\t") else cfg.delimiter
    return "\t" if file.lower().endswith(".tsv") else ","


def quoting_of(delimiter: str, cfg: DataConfig) -> Quoting:
    """auto: tab-separated files are read as GLUE writes them (a quote is text), the rest as RFC 4180 CSV."""
    quoting = Quoting(cfg.quoting)
    if quoting is Quoting.auto:
        return Quoting.none if delimiter == "\t" else Quoting.rfc4180
    return quoting


def csv_options(files: dict[str, str], cfg: DataConfig) -> tuple[dict[str, Any], dict[str, int]]:
    """The reader options for `datasets.load_dataset('csv', ...)` and the rows each split's file holds, counted by
    Python's csv module under the same dialect (strict: a line it cannot read is named here, before loading)."""
    dialects = {(delimiter_of(f, cfg), quoting_of(delimiter_of(f, cfg), cfg)) for f in files.values()}
    if len(dialects) > 1:
        raise UserError(
            f"data files {', '.join(files.values())} mix comma- and tab-separated files; "
            "give them one name ending, or set task.data.delimiter and task.data.quoting"
        )
    delimiter, quoting = dialects.pop()
    counts = {split: count_rows(file, delimiter, quoting) for split, file in files.items()}
    options = {
        "delimiter": delimiter,
        "quoting": csv.QUOTE_NONE if quoting is Quoting.none else csv.QUOTE_MINIMAL,
        "keep_default_na": False,  # a text "NA", "null" or "None" is a text; only an empty field is missing
        "na_values": [""],
    }
    return options, counts


def count_rows(file: str, delimiter: str, quoting: Quoting) -> int:
    """Data rows (after the header, blank lines skipped) of a delimited file; a row whose field count differs from
    the header's, or a quote RFC 4180 cannot read, is a UserError naming the file and line."""
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # a long document in one field is data, not an error
    try:
        with open(file, encoding="utf-8-sig", newline="") as handle:
            if quoting is Quoting.none:
                reader = csv.reader(handle, delimiter=delimiter, quoting=csv.QUOTE_NONE)
            else:
                reader = csv.reader(handle, delimiter=delimiter, quotechar='"', doublequote=True, strict=True)
            return _count(reader, file, delimiter, quoting)
    finally:
        csv.field_size_limit(limit)


def _count(reader: Any, file: str, delimiter: str, quoting: Quoting) -> int:
    header, rows = None, 0
    while True:
        line = reader.line_num + 1  # where the next record starts (a quoted field may span lines)
        try:
            record = next(reader)
        except StopIteration:
            return rows
        except csv.Error as ex:
            raise UserError(
                f"{file}, line {line}: cannot be read as CSV ({ex}); quote the field as RFC 4180 does "
                '("..." with "" for a quote), or set task.data.quoting=none if quotes are text'
            ) from ex
        if not record:
            continue  # a blank line (the loader skips it too)
        if header is None:
            header = record
            twice = next((name for i, name in enumerate(record) if name.strip() and name in record[:i]), None)
            if twice is not None:  # pandas would rename the second one and a column would be silently lost
                raise UserError(
                    f"{file}, line {line}: the header names the column '{twice}' twice; give each column its own name"
                )
        elif len(record) != len(header):
            name = "tab" if delimiter == "\t" else f"'{delimiter}'"
            hint = "" if quoting is Quoting.none else "quote a field that holds one, or "
            raise UserError(
                f"{file}, line {line}: {len(record)} fields where the header has {len(header)} "
                f"(a {name} inside a text?); {hint}fix the line or set task.data.delimiter / task.data.quoting"
            )
        else:
            rows += 1


def load_splits(fmt: str, files: dict[str, str], **options: Any) -> Any:
    """A DatasetDict with each split's file loaded on its own: split files may differ in columns (GLUE's unlabeled
    test.tsv) or in inferred types (a dev file whose optional column is all empty), which one load cannot cast."""
    import datasets

    return datasets.DatasetDict(
        {split: datasets.load_dataset(fmt, data_files={split: file}, **options)[split] for split, file in files.items()}
    )


def check_row_counts(raw: Any, files: dict[str, str], counts: dict[str, int]) -> None:
    """Rows in = rows out: each split holds as many rows as its file (a safety net under the strict pre-count)."""
    for split, expected in counts.items():
        if split in raw and raw[split].num_rows != expected:
            raise UserError(
                f"{files[split]}: read {raw[split].num_rows} rows where the file holds {expected}; "
                "set task.data.delimiter / task.data.quoting to match how it was written"
            )


def folder_split_files(folder: Path, cfg: DataConfig, suffixes: Iterable[str]) -> dict[str, str]:
    """split -> file in a data folder: the configured split names, plus the common names of the validation split
    (dev, val, valid, eval) and of test. Two files for one split are an error naming both."""
    files: dict[str, str] = {}
    for split in dict.fromkeys((cfg.train_split, cfg.eval_split, cfg.test_split)):
        names = [split] if split == cfg.train_split else dict.fromkeys([split, *SPLIT_ALIASES.get(split, ())])
        found = [path for name in names for suffix in suffixes if (path := folder / f"{name}{suffix}").is_file()]
        if len(found) > 1:
            raise UserError(
                f"data folder {folder} has {len(found)} files for split '{split}' "
                f"({', '.join(p.name for p in found)}); keep one, or name each split's file with "
                f"task.data.data_files={{{split}:<file>,...}}"
            )
        if found:
            files[split] = str(found[0])
    if cfg.train_split not in files:
        files = conll2003_files(folder, cfg)
    if not files:
        raise UserError(
            f"no {cfg.train_split}.<{'|'.join(s.lstrip('.') for s in suffixes)}> file (or CoNLL-2003's "
            f"<lang>.train, .testa, .testb) in data folder {folder}"
        )
    return files


def conll2003_files(folder: Path, cfg: DataConfig) -> dict[str, str]:
    """split -> file for a folder of CoNLL-2003's own files: <lang>.train, <lang>.testa (validation), <lang>.testb
    (test); empty when the folder has no <lang>.train. Two languages in one folder are an error naming them."""
    trains = sorted(p for p in folder.glob("*.train") if p.is_file())
    if len(trains) > 1:
        raise UserError(
            f"data folder {folder} holds {', '.join(p.name for p in trains)}; name one language's files with "
            "task.data.data_files={train:<lang>.train,validation:<lang>.testa,test:<lang>.testb}"
        )
    if not trains:
        return {}
    splits = {"train": cfg.train_split, "eval": cfg.eval_split, "test": cfg.test_split}
    return {
        splits[role]: str(path) for ending, role in CONLL2003_ENDINGS.items() if (path := trains[0].with_suffix(ending)).is_file()
    }


def warn_unused(folder: Path, used: Iterable[str]) -> None:
    """One line naming what in a data folder the loader does not read (a misnamed split file is not silently lost)."""
    used_names = {Path(f).name for f in used}
    unused = sorted(
        p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if not p.name.startswith(".") and p.name not in used_names
    )
    if unused and os.environ.get("RANK", "0") == "0":  # once under torchrun
        print(
            f"warning: data folder {folder}: not used: {', '.join(unused)} (split files are named train, "
            f"{'/'.join(SPLIT_ALIASES['validation'])}, test)",
            file=sys.stderr,
        )


def drop_unlabeled(raw: Any, files: dict[str, str], cfg: DataConfig) -> Any:
    """A folder's validation/test file without the label column train has (GLUE ships its test.tsv unlabeled) is
    set aside with one warning line, so that split is carved from train instead of failing on a missing column."""
    train = raw.get(cfg.train_split)
    if train is None or cfg.label_column not in train.column_names:
        return raw
    for split in [s for s in raw if s != cfg.train_split and cfg.label_column not in raw[s].column_names]:
        del raw[split]
        if os.environ.get("RANK", "0") == "0":
            print(
                f"warning: {files[split]} has no '{cfg.label_column}' column (an unlabeled file, as GLUE ships its "
                f"test.tsv): the {split} split is carved from train instead",
                file=sys.stderr,
            )
    return raw
