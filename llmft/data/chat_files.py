"""JSON files of conversations (ShareGPT, OpenAI chat JSONL) read by us, each conversation kept as its JSON text.
Arrow cannot hold a `content` that is text in one message and a list of parts in another, and `datasets` then stores
it as JSON and decodes every value: an answer "4" comes back as the integer 4, a tool result '{"temp": 18}' as a
dict. Kept as text, a conversation reaches llmft/data/chat_formats.py exactly as written."""

from __future__ import annotations

import json
from typing import Any, Optional

from llmft.config import DataConfig
from llmft.errors import UserError

TURN_KEYS = ({"role"}, {"from", "value"})  # what a message of a conversation column holds
SNIFF_BYTES = 1 << 16


def _is_conversation(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, dict) for t in value)
        and any(keys <= set(value[0]) for keys in TURN_KEYS)
    )


def read_records(file: str) -> list[dict[str, Any]]:
    """The rows of a JSON array file or a JSON Lines file (a byte-order mark, CRLF and no final newline allowed)."""
    with open(file, encoding="utf-8-sig") as handle:
        text = handle.read()
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as bad:
            raise UserError(f"{file}, line {bad.lineno}: not valid JSON ({bad.msg} at column {bad.colno})") from None
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as bad:
                    raise UserError(
                        f"{file}, line {number}: not valid JSON ({bad.msg} at column {bad.colno}); "
                        "each line of a .jsonl file must be one JSON object"
                    ) from None
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise UserError(f"{file}, row {number}: a JSON {type(row).__name__}, not an object with one field per column")
    return rows


def conversation_columns(file: str) -> list[str]:
    """The columns of the file's first row that hold a conversation (a list of {role...} or {from, value} turns)."""
    with open(file, encoding="utf-8-sig") as handle:
        head = handle.read(SNIFF_BYTES)
    if '"role"' not in head and '"from"' not in head:
        return []
    try:
        rows = read_records(file)
    except UserError:
        return []  # the ordinary reader names what is wrong
    return [k for k, v in rows[0].items() if _is_conversation(v)] if rows else []


def read_chat_json(files: dict[str, str], cfg: DataConfig) -> Optional[Any]:
    """A DatasetDict when the train file holds conversations, each conversation column (and `tools`) as JSON text;
    else None (read as ordinary JSON rows)."""
    import datasets

    train = files.get(cfg.train_split) or next(iter(files.values()))
    columns = conversation_columns(train)
    if not columns:
        return None
    splits = {}
    for split, file in files.items():
        rows = read_records(file)
        if not rows:
            raise UserError(f"data file {file} (split '{split}') has no rows")
        as_text = set(columns) | {"tools"}
        records = [
            {
                k: json.dumps(v, ensure_ascii=False) if k in as_text and not isinstance(v, str) and v is not None else v
                for k, v in row.items()
            }
            for row in rows
        ]
        try:
            splits[split] = datasets.Dataset.from_list(records)
        except Exception as ex:  # noqa: BLE001 - arrow cannot type another column: name it in one line
            raise UserError(f"could not read {file}: {str(ex).splitlines()[0] if str(ex) else type(ex).__name__}") from ex
    return datasets.DatasetDict(splits)
