"""Small data files in the layouts their publishers use (tests/fixtures/, see its README.md), and the byte variants
real copies of them come in: Windows line ends, a UTF-8 byte-order mark, no newline after the last line."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
VARIANTS = ("as_published", "crlf", "bom", "no_final_newline")


def variant_bytes(raw: bytes, kind: str) -> bytes:
    """The file's bytes as `kind` has them."""
    if kind == "as_published":
        return raw
    if kind == "crlf":
        return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if kind == "bom":
        return b"\xef\xbb\xbf" + raw
    if kind == "no_final_newline":
        return raw.rstrip(b"\r\n")
    raise ValueError(kind)


def copy_fixture(name: str, dest: Path, kind: str = "as_published") -> Path:
    """tests/fixtures/<name> (a file or a folder) copied to `dest`, every file in the `kind` variant."""
    source = FIXTURES / name
    if source.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(variant_bytes(source.read_bytes(), kind))
        return dest
    shutil.copytree(source, dest)
    for file in dest.rglob("*"):
        if file.is_file() and file.name != "README.md":
            file.write_bytes(variant_bytes(file.read_bytes(), kind))
    return dest


def plan_rows(stdout: str) -> dict[str, int]:
    """role -> rows, from the plan table `llmft train --dry-run` prints (`data/train │ rows=12, ...`)."""
    return {role: int(rows) for role, rows in re.findall(r"data/(train|eval|test)\s*\W\s*rows=(\d+)", stdout)}
