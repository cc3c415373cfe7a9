"""Raw text files as documents for language modelling: one document per file, per paragraph (lines up to a blank
line) or per line (`task.data.text_unit`), in a `text` column. Files are read whole, as UTF-8."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from llmft.config import TextUnit
from llmft.errors import UserError

TEXT_COLUMN = "text"
SNIFF_BYTES = 4096


def sniff_format(path: str) -> str:
    """'json' for a file without an extension whose first non-blank character opens a JSON value, else 'text'."""
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES).lstrip(b"\xef\xbb\xbf \t\r\n")  # a UTF-8 byte-order mark, blank lines
    return "json" if head[:1] in (b"{", b"[") else "text"


def decode(raw: bytes, path: str) -> str:
    """UTF-8 text with its line breaks made '\\n'; binary data or another encoding is one line naming the file."""
    nul = raw.find(b"\x00")
    if nul >= 0:  # valid UTF-8 can hold NUL bytes; text files do not
        raise UserError(
            f"{path} is not a text file (a NUL byte at byte {nul}); give UTF-8 text, or a csv/tsv/json/jsonl/parquet file"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as ex:
        raise UserError(f"{path} is not a text file in UTF-8 ({ex.reason} at byte {ex.start}); re-save it as UTF-8") from ex
    return text.replace("\r\n", "\n").replace("\r", "\n")


def documents(text: str, unit: TextUnit) -> list[str]:
    """The documents of one file's text. Whitespace-only lines separate paragraphs and are never a document; lines
    keep their own spaces."""
    lines = text.split("\n")
    if unit is TextUnit.line:
        return [line for line in lines if line.strip()]
    if unit is TextUnit.file:
        kept = [i for i, line in enumerate(lines) if line.strip()]
        return ["\n".join(lines[kept[0] : kept[-1] + 1])] if kept else []
    paragraphs, block = [], []
    for line in lines:
        if line.strip():
            block.append(line)
        elif block:
            paragraphs.append("\n".join(block))
            block = []
    return paragraphs + (["\n".join(block)] if block else [])


def load_text(files: dict[str, str], unit: TextUnit) -> Any:
    """A DatasetDict, one split per file, one row per document. Each split's fingerprint is its file's content, the
    unit and this module's code, so the tokenization cache and the run manifest follow the text, not the file name."""
    import pyarrow as pa
    from datasets import Dataset, DatasetDict
    from datasets.table import InMemoryTable

    out = {}
    for split, path in files.items():
        raw = Path(path).read_bytes()
        docs = documents(decode(raw, path), unit)
        if not docs:
            raise UserError(f"data file {path} (split '{split}') holds no text")
        digest = hashlib.sha256(raw + f"|{unit.value}|".encode() + Path(__file__).read_bytes()).hexdigest()[:32]  # + this reader
        out[split] = Dataset(InMemoryTable(pa.table({TEXT_COLUMN: pa.array(docs, pa.string())})), fingerprint=digest)
    return DatasetDict(out)
