"""Load a data set (hub id, local file/folder, or builtin), name its splits, carve missing ones, batch."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Optional

from llmft.config import ROW_FORMATS, DataConfig, EmptyTexts
from llmft.data import chat_files, json_records, load_errors, nested_fields
from llmft.data import files as data_files
from llmft.data.columns import ROW_COLUMN  # noqa: F401  (re-exported: other modules read it here)
from llmft.data.conll import load_conll
from llmft.data.loaders import EpochSampler, batching, group_by_length, make_loader, row_lengths  # noqa: F401  (re-exported)
from llmft.data.quality import drop_exact_duplicates
from llmft.data.text_files import load_text, sniff_format
from llmft.errors import UserError, closest
from llmft.paths import package_dir, resources_dir

BUILTIN_PREFIX = "builtin:"
FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
    ".txt": "text",
    ".conll": "conll",
    ".iob": "conll",
    ".iob2": "conll",
    ".bio": "conll",
}  # CoNLL columns: llmft/data/conll.py
ROLES = ("train", "eval", "test")
LINE_COLUMN = "__line__"  # the file line a CoNLL sentence starts on (llmft/data/conll.py), for error messages


def _format_of(path: str, cfg: Optional[DataConfig] = None) -> str:
    """A file's format: `task.data.format` when set, else from its name (no extension: JSON or text by content)."""
    if cfg is not None and cfg.format is not None:
        return "json" if cfg.format in ROW_FORMATS else cfg.format  # Alpaca/ShareGPT/OpenAI rows are JSON
    suffix = Path(path).suffix.lower()
    if suffix in data_files.CONLL2003_ENDINGS:  # CoNLL-2003's eng.train, eng.testa, eng.testb
        return "conll"
    if not suffix and Path(path).is_file():  # no extension: JSON when it starts like JSON, else raw text
        return sniff_format(path)
    if suffix not in FORMATS:
        raise UserError(
            f"unsupported data file type '{suffix}' for {path}; use one of {', '.join(FORMATS)} "
            "(a file without an extension is read as text, or JSON when it starts with { or [)"
        )
    return FORMATS[suffix]


def _files_in_folder(folder: Path, cfg: DataConfig) -> dict[str, str]:
    """Files named after the splits (train.jsonl, dev.tsv, val.json, test.csv, ...) in a folder."""
    return data_files.folder_split_files(folder, cfg, FORMATS)


def local_files(cfg: DataConfig) -> dict[str, str] | None:
    """split -> file for local data, or None when `cfg.path` is a hub id."""
    if cfg.data_files:
        files = dict(cfg.data_files)
    elif cfg.path.startswith(BUILTIN_PREFIX):
        folder = resources_dir() / cfg.path[len(BUILTIN_PREFIX) :]
        if not folder.is_dir():
            raise UserError(f"unknown builtin data set '{cfg.path}'")
        return _files_in_folder(folder, cfg)
    elif Path(cfg.path).expanduser().is_dir():
        return _files_in_folder(Path(cfg.path).expanduser(), cfg)
    elif Path(cfg.path).suffix.lower() in FORMATS or cfg.path.startswith((".", "/", "~")) or Path(cfg.path).is_file():
        files = {cfg.train_split: cfg.path}
    else:
        return None
    for split, file in files.items():
        if not Path(file).expanduser().is_file():
            raise UserError(f"data file not found: {file} (split '{split}')")
    return {split: str(Path(file).expanduser()) for split, file in files.items()}


def load_raw(cfg: DataConfig) -> Any:
    """A DatasetDict with whichever splits the source has."""
    import datasets

    files = local_files(cfg)
    try:
        if files is not None:
            formats = {_format_of(f, cfg) for f in files.values()}
            if len(formats) > 1:
                raise UserError(f"all data files must share one format, got {sorted(formats)}")
            load_errors.check_not_empty(files)
            folder = _user_folder(cfg)
            if folder is not None:
                data_files.warn_unused(folder, files.values())
            fmt = formats.pop()
            squad = nested_fields.read_squad(files) if fmt == "json" else None  # SQuAD's layout, told by content
            if squad is not None:
                return nested_fields.expose(squad)
            records = json_records.read_records(files, cfg.field) if fmt == "json" else None  # rows under one key
            if records is not None:
                return nested_fields.expose(records)
            if cfg.field is not None:
                raise UserError(f"task.data.field={cfg.field} applies to JSON files; {', '.join(files.values())} are {fmt}")
            chats = chat_files.read_chat_json(files, cfg) if fmt == "json" else None  # conversations kept as written
            if chats is not None:
                return chats
            if fmt == "text":
                return load_text(files, cfg.text_unit)
            if fmt == "conll":
                return load_conll(files)
            kwargs, rows = data_files.csv_options(files, cfg) if fmt == "csv" else ({}, {})
            raw = data_files.load_splits(fmt, files, **kwargs)
            data_files.check_row_counts(raw, files, rows)
            return nested_fields.expose(data_files.drop_unlabeled(raw, files, cfg) if folder is not None else raw)
        field = {"field": cfg.field} if cfg.field else {}  # a hub data set of JSON files
        return nested_fields.expose(datasets.load_dataset(cfg.path, cfg.name, revision=cfg.revision, **field))
    except UserError:
        raise
    except Exception as ex:
        if files is not None:
            load_errors.raise_located(files, ex, [f for f in files.values() if _format_of(f, cfg) == "json"])
        if isinstance(ex, UnicodeDecodeError):
            raise UserError(f"could not read data set '{cfg.path}': {load_errors.root_cause(ex)}") from ex
        if isinstance(ex, (FileNotFoundError, ValueError, ConnectionError, OSError)):
            first = str(ex).strip().splitlines()[0] if str(ex).strip() else type(ex).__name__
            raise UserError(f"could not load data set '{cfg.path}': {first}") from ex
        if type(ex).__module__.startswith("datasets"):  # datasets wraps parser errors (bad JSON, bad bytes) in its own types
            raise UserError(f"could not read data set '{cfg.path}': {load_errors.root_cause(ex)}") from ex
        raise


def _user_folder(cfg: DataConfig) -> Optional[Path]:
    """The user's data folder the split files come from, if they do (not explicit data_files, not a builtin)."""
    folder = Path(cfg.path).expanduser()
    return folder if not cfg.data_files and not cfg.path.startswith(BUILTIN_PREFIX) and folder.is_dir() else None


def named_splits(raw: Any, cfg: DataConfig) -> dict[str, Any]:
    """{'train', 'eval', 'test'} -> Dataset; a missing eval/test split is carved from train with a fixed seed."""
    if cfg.train_split not in raw:
        raise UserError(f"data set '{cfg.path}' has no split '{cfg.train_split}'; it has: {', '.join(raw)}")
    train = raw[cfg.train_split]
    out: dict[str, Any] = {}
    carve = [split for split in (cfg.eval_split, cfg.test_split) if split not in raw or split == cfg.train_split]
    if (carve or cfg.dedup) and ROW_COLUMN not in train.column_names:  # the carve shuffles: keep each row's place in its file
        train = train.add_column(ROW_COLUMN, list(range(len(train))))
    if cfg.dedup:
        train = _drop_duplicates(train, cfg)
    for role, split in (("eval", cfg.eval_split), ("test", cfg.test_split)):
        if split not in carve:
            out[role] = raw[split]
            continue
        if len(train) < 4:
            source = split_source(cfg, "train")
            hint = json_records.records_hint(source) if len(train) == 1 and Path(source).is_file() else ""
            raise UserError(
                f"split '{split}' is missing and train ('{source}') has too few rows ({len(train)}) to carve it{hint}"
            )
        parts = train.train_test_split(test_size=cfg.carve_ratio, seed=cfg.split_seed)
        train, out[role] = parts["train"], parts["test"]
    out = {"train": train, **out}
    out = {role: cap(ds, role, cfg) for role, ds in out.items()}
    for role in ROLES:
        if len(out[role]) == 0:
            raise UserError(f"the {role} split of '{split_source(cfg, role)}' is empty")
    return out


def split_source(cfg: DataConfig, role: str) -> str:
    """Where a split's rows come from, for error messages: its file when the data is local (a carved split: the
    train file), else the data set's name (a hub id, or `builtin:<name>` for bundled data)."""
    if cfg.path.startswith(BUILTIN_PREFIX) and not cfg.data_files:
        return cfg.path
    split = {"train": cfg.train_split, "eval": cfg.eval_split, "test": cfg.test_split}.get(role, role)
    try:
        files = local_files(cfg) or {}
    except UserError:
        files = {}
    return files.get(split) or files.get(cfg.train_split) or cfg.path


def _drop_duplicates(train: Any, cfg: DataConfig) -> Any:
    """`task.data.dedup=true`: identical train rows (case and spacing folded) kept once, before any split is carved."""
    import os
    import sys

    train, dropped = drop_exact_duplicates(train)
    if os.environ.get("RANK", "0") == "0":
        print(f"task.data.dedup: dropped {dropped} duplicate row(s) of split '{cfg.train_split}' before carving", file=sys.stderr)
    return train


def drop_empty_texts(ds: Any, columns: list[str], role: str, cfg: DataConfig) -> tuple[Any, int]:
    """Rows whose text is missing, empty or whitespace-only: dropped and counted, or an error (config)."""

    def blank(row: dict[str, Any]) -> bool:
        return any(not isinstance(row[c], str) or not row[c].strip() for c in columns)

    empty = [i for i, row in enumerate(ds.select_columns(columns)) if blank(row)]
    if not empty:
        return ds, 0
    if cfg.empty_texts is EmptyTexts.error:
        raise UserError(
            f"the {role} split has {len(empty)} empty or whitespace-only texts (first: {row_origin(ds, empty[0], role, cfg)}); "
            "clean the data or set task.data.empty_texts=drop"
        )
    if len(empty) == len(ds):
        raise UserError(f"every text in the {role} split is empty")
    drop = set(empty)
    return ds.select([i for i in range(len(ds)) if i not in drop]), len(empty)


def row_origin(ds: Any, index: int, role: str, cfg: DataConfig, item: int = 0) -> str:
    """Where row `index` of the `role` split came from, in the user's terms: 'line 31 of data.jsonl' (a JSON
    Lines file), 'line 105 of eng.train' (a CoNLL file: the line of the row's token `item`), 'row 30 of data.csv'
    (counted after the header), or 'row 30 of split train' (a hub data set). Rows carved off train carry their
    position in the train file (ROW_COLUMN); other splits keep file order."""
    carved = ROW_COLUMN in ds.column_names
    record = ds[index] if carved or LINE_COLUMN in ds.column_names else {}
    row = int(record[ROW_COLUMN]) if carved else index
    split = (
        cfg.train_split if carved else {"train": cfg.train_split, "eval": cfg.eval_split, "test": cfg.test_split}.get(role, role)
    )
    try:
        file = (local_files(cfg) or {}).get(split)
    except UserError:
        file = None
    if file is None:
        return f"row {row + 1} of split '{split}'"
    if LINE_COLUMN in record:  # a CoNLL sentence: one token per line from its first
        return f"line {int(record[LINE_COLUMN]) + item} of {file}"
    if file.endswith(".jsonl"):  # datasets skips blank lines: the row's line is the (row+1)-th non-blank one
        with open(file, encoding="utf-8", errors="replace") as handle:
            count = -1
            for number, line in enumerate(handle, 1):
                count += bool(line.strip())
                if count == row:
                    return f"line {number} of {file}"
    return f"row {row + 1} of {file}"


def cap(ds: Any, role: str, cfg: DataConfig) -> Any:
    """The first max_train_samples / max_eval_samples rows, when set (for smoke runs and tests)."""
    limit = cfg.max_train_samples if role == "train" else cfg.max_eval_samples
    return ds.select(range(min(limit, len(ds)))) if limit is not None else ds


def check_columns(ds: Any, columns: list[str], where: str) -> None:
    names = [c for c in ds.column_names if c not in (ROW_COLUMN, LINE_COLUMN)]
    missing = [c for c in columns if c not in names]
    if missing:
        hint = closest(missing[0], names)
        raise UserError(f"column '{missing[0]}' not found in {where}{hint}; columns: {', '.join(names)}")


def cached_map(ds: Any, function: Callable, key: str, tokenizer: Any, **kwargs: Any) -> Any:
    """`ds.map` under a fingerprint made of what the result depends on: the data's own fingerprint, `key` (the task
    config and max length), the tokenizer's content and llmft's tokenization code. datasets then finds the result of
    an earlier run in its cache instead of tokenizing again (hashing a closure over a tokenizer is not stable across
    processes, so datasets' own guess would miss)."""
    import hashlib

    content = tokenizer_fingerprint(tokenizer)
    if content is None:  # not a transformers tokenizer: leave the hashing to datasets
        return ds.map(function, **kwargs)
    digest = hashlib.sha256(f"{getattr(ds, '_fingerprint', '')}|{key}|{content}|{_tokenization_code()}".encode())
    return ds.map(function, new_fingerprint=digest.hexdigest()[:32], **kwargs)


@functools.lru_cache(maxsize=None)
def _tokenization_code() -> str:
    """A digest of llmft's tokenization code (the task modules and this one), read once per process."""
    import hashlib

    digest = hashlib.sha256()
    for source in sorted((package_dir() / "tasks").glob("*.py")) + sorted((package_dir() / "data").glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> Optional[str]:
    import hashlib

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        content = backend.to_str()
    elif hasattr(tokenizer, "get_vocab"):
        content = repr(sorted(tokenizer.get_vocab().items()))
    else:
        return None
    extra = [getattr(tokenizer, a, None) for a in ("chat_template", "padding_side", "truncation_side", "all_special_tokens")]
    return hashlib.sha256(f"{content}|{extra}".encode()).hexdigest()


def fingerprint(splits: dict[str, Any]) -> dict[str, str]:
    """The datasets fingerprint of each split, for the run manifest."""
    return {role: getattr(ds, "_fingerprint", "") for role, ds in splits.items()}
