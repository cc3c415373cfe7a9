"""Where a local data file failed to load, in the user's terms: an empty file, the JSON line that does not parse, the
root cause under the wrappers `datasets` puts around a parser error."""

from __future__ import annotations

import json
from pathlib import Path

from llmft.errors import UserError


def check_not_empty(files: dict[str, str]) -> None:
    """A file with no text at all (datasets fails on it with a bare StopIteration)."""
    for split, file in files.items():
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 16):
                if chunk.strip():
                    break
            else:
                raise UserError(f"data file {file} (split '{split}') is empty")


def raise_located(files: dict[str, str], ex: Exception, json_files: list[str]) -> None:
    """When a local file failed to load, find the line at fault ourselves (datasets names only a byte position):
    a JSON line that does not parse (in `json_files`), a file that has a header but no rows. Returns when nothing is
    found."""
    for file in json_files:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            return  # reported as not UTF-8 by the caller
        if file.endswith(".json"):
            try:
                json.loads(text)
                continue
            except json.JSONDecodeError:
                pass  # maybe JSON Lines under a .json name: check line by line
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as bad:
                raise UserError(
                    f"{file}, line {number}: not valid JSON ({bad.msg} at column {bad.colno}); "
                    "each line of a .jsonl file must be one JSON object"
                ) from ex
            if not isinstance(row, dict):
                raise UserError(
                    f"{file}, line {number}: a JSON {type(row).__name__}, not an object with one field per column"
                ) from ex
    if "corresponds to no data" in str(ex):
        raise UserError(f"data file(s) {', '.join(files.values())} have no rows") from ex


def root_cause(ex: BaseException) -> str:
    """The first line of the innermost error under `ex` (a UnicodeDecodeError said as "not valid UTF-8")."""
    cause: BaseException | None = ex
    while cause is not None:
        if isinstance(cause, UnicodeDecodeError):
            return f"it is not valid UTF-8 text ({cause.reason} at byte {cause.start}); re-save it as UTF-8"
        if cause.__cause__ is None and cause.__context__ is None:
            break
        cause = cause.__cause__ or cause.__context__
    first = str(cause or ex).strip().splitlines()
    return first[0] if first else type(ex).__name__
