"""The input rows of `llmft generate input=<file.jsonl>`: one JSON object a line, each carrying the fields a task reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmft.data.nested_fields import lookup
from llmft.errors import UserError


def read_jsonl(path: Path, columns: list[str]) -> list[dict[str, Any]]:
    """Rows of a JSONL file; each must carry `columns` (a single column may also come as `text`)."""
    if not path.is_file():
        raise UserError(f"input file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as ex:
        raise UserError(f"input file {path} is not UTF-8 text: {ex}") from ex
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as ex:
            raise UserError(f"{path}:{number} is not a JSON object: {ex.msg}") from ex
        if not isinstance(row, dict):
            raise UserError(f"{path}:{number} is not a JSON object")
        if len(columns) == 1 and columns[0] not in row and "text" in row:
            row[columns[0]] = row["text"]
        missing = [c for c in columns if not isinstance(_field(row, c), str)]
        if missing:
            raise UserError(f"{path}:{number} has no text field '{missing[0]}' (needed: {columns})")
        rows.append(row)
    if not rows:
        raise UserError(f"input file {path} has no rows")
    return rows


def _field(row: dict[str, Any], path: str) -> Any:
    """A row's column or nested field (dotted path), or None."""
    try:
        return lookup(row, path)
    except UserError:
        return None
