"""CoNLL column files (CoNLL-2003 and the many NER sets written like it) as rows of a token list and a tag list.

One token per line, its columns split on whitespace: the first column is the token, the last its tag (the middle
columns, part-of-speech and chunk tags in CoNLL-2003, are not read). A blank line ends a sentence; `-DOCSTART-`
lines mark documents and are skipped. Files ending .conll, .iob, .iob2 or .bio are read this way, and any other file
with `task.data.format=conll` (CoNLL-2003's own `eng.train`, a `train.txt`)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from llmft.data.text_files import decode
from llmft.errors import UserError

TOKENS, TAGS = "tokens", "ner_tags"  # the columns a CoNLL file becomes (the Hugging Face conll2003 names)
LINE = "__line__"  # the file line of a sentence's first token (error messages name lines; loading.LINE_COLUMN)
DOCSTART = "-DOCSTART-"


def sentences(text: str, path: str) -> list[dict[str, Any]]:
    """Each sentence of a CoNLL file's text as {tokens, ner_tags, __line__} (its first token's line, counted from 1);
    a line with a single column names its line."""
    rows, tokens, tags, first = [], [], [], 0
    for number, line in enumerate(text.split("\n"), 1):
        columns = line.split()
        if not columns or columns[0] == DOCSTART:
            if tokens:
                rows.append({TOKENS: tokens, TAGS: tags, LINE: first})
            tokens, tags = [], []
            continue
        if not tokens:
            first = number
        if len(columns) < 2:
            raise UserError(
                f"{path}, line {number}: one column ({line.strip()!r}); each line of a CoNLL file is "
                "`token ... tag` (a blank line between sentences)"
            )
        if len(columns[-1]) == 2 and columns[-1][1] == "-":  # `B-`: a position without an entity type
            raise UserError(
                f"{path}, line {number}: tag {columns[-1]!r} has no entity type (e.g. B-PER, I-LOC; O outside entities)"
            )
        tokens.append(columns[0])
        tags.append(columns[-1])
    if tokens:
        rows.append({TOKENS: tokens, TAGS: tags, LINE: first})
    return rows


def load_conll(files: dict[str, str]) -> Any:
    """A DatasetDict, one split per file, one row per sentence. Each split's fingerprint is its file's content and
    this reader's code, so the tokenization cache follows the text, not the file name."""
    import pyarrow as pa
    from datasets import Dataset, DatasetDict
    from datasets.table import InMemoryTable

    out = {}
    for split, path in files.items():
        raw = Path(path).read_bytes()
        rows = sentences(decode(raw, path), path)
        if not rows:
            raise UserError(f"data file {path} (split '{split}') holds no sentence (CoNLL: one `token ... tag` per line)")
        table = pa.table(
            {
                TOKENS: pa.array([r[TOKENS] for r in rows], pa.list_(pa.string())),
                TAGS: pa.array([r[TAGS] for r in rows], pa.list_(pa.string())),
                LINE: pa.array([r[LINE] for r in rows], pa.int64()),
            }
        )
        digest = hashlib.sha256(raw + b"|conll|" + Path(__file__).read_bytes()).hexdigest()[:32]
        out[split] = Dataset(InMemoryTable(table), fingerprint=digest)
    return DatasetDict(out)
