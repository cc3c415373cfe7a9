"""What `llmft explain` asks of a family (`ExplainsTokens` in tasks/base.py): the rows a prompt or file gives, one row's
encoding (a batch of one), and the outputs to attribute, each a `Target` that picks one score per batch row from the
model's logits (a class logit, a word's tag logit, a choice's score)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from llmft.data.jsonl_input import read_jsonl
from llmft.data.nested_fields import lookup
from llmft.errors import UserError


@dataclass
class Target:
    pick: Callable[[Any], Any]  # the model's logits (batch, ...) -> the explained score of each batch row, (batch,)
    name: str  # what is explained: a label, "score", "word -> tag", "choice 2"
    choice: Optional[int] = None  # multiple choice: only this choice's input is attributed (and shown)


def class_logit(index: int, name: str) -> Target:
    """Output `index` of a (batch, classes) head."""
    return Target(lambda logits: logits[:, index], name)


def text_rows(columns: list[str], prompt: Optional[str], input: Optional[Path]) -> list[dict[str, Any]]:
    """The prompt as the one text column, or the file's rows (classification, regression)."""
    if prompt is not None:
        if len(columns) != 1:
            raise UserError(f"this run reads sentence pairs {columns}; pass them as input=<file.jsonl>")
        return [{columns[0]: prompt}]
    return read_jsonl(input, columns)  # type: ignore[arg-type]


def text_encoding(row: dict[str, Any], columns: list[str], tokenizer: Any, max_length: int) -> dict[str, Any]:
    """One row's text columns encoded as training encoded them (a batch of one)."""
    return dict(tokenizer(*[lookup(row, c) for c in columns], truncation=True, max_length=max_length, return_tensors="pt"))
