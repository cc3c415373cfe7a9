"""A JSON file whose rows sit in a list under one key of its top-level object, as `datasets`' json `field` reads it:
`task.data.field=data` names the key, and transformers' `run_qa.py` layout of SQuAD (`{"version", "data": [{id,
question, context, answers}]}`) is told by its content (flat question-answer records), so it reads without the option.
Files are read whole as UTF-8 (a byte-order mark is allowed); each split's fingerprint is its file's content, the key
and this reader's code, so the tokenization cache follows the text."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

from llmft.errors import UserError

QA_FIELDS = ("question", "context", "answers")  # a flat SQuAD record, as run_qa.py reads it


def _document(file: str) -> Any:
    """The parsed file, or None when it is not one JSON value (JSON Lines, or broken: the ordinary reader says)."""
    raw = Path(file).read_bytes()
    if not raw.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return None
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _record_lists(document: Any) -> dict[str, list]:
    """key -> value for each key of a top-level object whose value is a non-empty list of records (objects)."""
    if not isinstance(document, dict):
        return {}
    return {
        key: value
        for key, value in document.items()
        if isinstance(value, list) and value and all(isinstance(r, dict) for r in value)
    }


def qa_key(file: str) -> Optional[str]:
    """The key whose records are flat question-answer rows (run_qa.py's SQuAD layout), else None."""
    for key, records in _record_lists(_document(file)).items():
        if all(all(f in r for f in QA_FIELDS) for r in records):
            return key
    return None


def records_hint(file: str) -> str:
    """'; its rows are under 'data': set task.data.field=data' for a file that is one object holding record lists."""
    keys = list(_record_lists(_document(file)))
    if not keys:
        return ""
    return f"; {file} is one JSON object whose rows are under '{keys[0]}': set task.data.field={keys[0]}"


def read_records(files: dict[str, str], field: Optional[str]) -> Any:
    """A DatasetDict when `field` is set (every file is one object holding its rows under that key) or when a file
    holds flat question-answer records under a key; else None (the ordinary JSON reader reads the files)."""
    keys = {split: field for split in files} if field else {split: qa_key(file) for split, file in files.items()}
    if not any(keys.values()):
        return None
    import datasets

    out = {}
    for split, file in files.items():
        key = keys[split]
        out[split] = _split(file, key, field) if key else datasets.load_dataset("json", data_files={split: file})[split]
    return datasets.DatasetDict(out)


def _split(file: str, key: str, field: Optional[str]) -> Any:
    import pyarrow as pa
    from datasets import Dataset
    from datasets.table import InMemoryTable

    document = _document(file)
    records = document.get(key) if isinstance(document, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        keys = f"its keys: {', '.join(document)}" if isinstance(document, dict) else "it is not one JSON object"
        raise UserError(f"task.data.field={field}: {file} has no list of records under '{key}' ({keys})")
    if not records:
        raise UserError(f"{file}: the list under '{key}' holds no rows")
    try:
        columns = dict.fromkeys(name for record in records for name in record)  # every field, not the first row's
        table = pa.Table.from_pydict({name: [record.get(name) for record in records] for name in columns})
    except (pa.ArrowInvalid, pa.ArrowTypeError) as ex:
        raise UserError(f"{file}: the records under '{key}' do not share one type per field ({ex})") from ex
    digest = hashlib.sha256(Path(file).read_bytes() + f"|{key}|".encode() + Path(__file__).read_bytes()).hexdigest()[:32]
    return Dataset(InMemoryTable(table), fingerprint=digest)
