"""Truncating tokenization that costs what the kept tokens need: only a bounded piece of each text, from the end that
truncation keeps, reaches the tokenizer. A 10 MB row then tokenizes as fast as a long ordinary one, and whether a row
was truncated comes from the same pass (no second tokenization at max_length + 1). The untruncated pass over a piece
may exceed the model's own maximum (a piece is bounded in characters, and a symbol can be a token each): it runs with
`verbose=False`, so transformers does not warn of a length that the cut after it removes."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from llmft.config import Side

CHARS_PER_TOKEN = 8  # first guess of the characters per token; a piece that yields too few tokens is doubled
TOKEN_MARGIN = 16  # tokens beyond what is kept that a piece must yield, so a cut inside a word never reaches a kept token


def char_budget(max_length: int) -> int:
    return CHARS_PER_TOKEN * (max_length + TOKEN_MARGIN)


def bounded_piece(text: str, budget: int, side: Side) -> tuple[str, int]:
    """At most `budget` characters of `text` from the end truncation keeps (side right: the start), and where the piece
    starts in `text`. The cut falls at a space where there is one in the last half of the piece, so the words the
    tokenizer sees are whole (the space stays with the word after it, as byte-level BPE and SentencePiece have it)."""
    if len(text) <= budget:
        return text, 0
    if side is Side.right:
        cut = text.rfind(" ", budget // 2, budget + 1)
        while cut > budget // 2 and text[cut - 1] == " ":  # cut before the whole run of spaces
            cut -= 1
        cut = cut if cut > budget // 2 else budget
        return text[:cut], 0
    first = len(text) - budget
    start = text.find(" ", first, len(text) - budget // 2)
    while 0 <= start < len(text) - 1 and text[start + 1] == " ":  # start at the run's last space, the one a word owns
        start += 1
    start = start if start >= 0 else first
    return text[start:], start


@contextmanager
def truncating_on(tokenizer: Any, side: Side) -> Iterator[None]:
    """The tokenizer truncates on `side` inside the block, and on its own side again after it."""
    saved = tokenizer.truncation_side
    tokenizer.truncation_side = side.value
    try:
        yield
    finally:
        tokenizer.truncation_side = saved


def bounded_encoding(tokenizer: Any, text: str, max_length: int, side: Side, **kwargs: Any) -> tuple[Any, int]:
    """The untruncated tokenization of the piece of `text` from which truncation to `max_length` tokens on `side`
    keeps its tokens, and the piece's start in `text` (offsets are relative to it). Whole texts that fit are tokenized
    whole, so ordinary rows come out exactly as before."""
    budget = char_budget(max_length)
    while True:
        piece, start = bounded_piece(text, budget, side)
        enc = tokenizer(piece, verbose=False, **kwargs)  # the caller cuts it: no "longer than the maximum" warning
        if len(piece) == len(text) or len(enc["input_ids"]) > max_length + TOKEN_MARGIN:
            return enc, start
        budget *= 2  # long tokens (runs of spaces, symbols): widen the piece


def _too_short(enc: Any, row: int, pieces: list[str], texts: list[str], max_length: int) -> bool:
    """Whether a cut text of this row yielded too few tokens for its piece to stand in for the whole text."""
    cut = [len(p) < len(t) for p, t in zip(pieces, texts)]
    if not any(cut):
        return False
    if len(texts) == 1:
        return len(enc["input_ids"][row]) <= max_length + TOKEN_MARGIN
    ids = enc.sequence_ids(row)
    return any(c and ids.count(i) <= max_length + TOKEN_MARGIN for i, c in enumerate(cut))


def encode_rows(
    tokenizer: Any, columns: list[list[str]], max_length: int, side: Side, as_target: bool = False, **kwargs: Any
) -> tuple[dict[str, list], list[bool]]:
    """Rows of one text column (or two: a pair) tokenized and truncated to `max_length` tokens on `side`, as
    `tokenizer(*columns, truncation=True, max_length=max_length)` would, and whether each row was truncated.
    `as_target`: one column of seq2seq targets (`text_target=`, for tokenizers with a target mode).

    One untruncated pass over bounded pieces gives every row's length; only the rows found too long are encoded again,
    with truncation, from their pieces."""

    def tokenize(texts: list[list[str]], **more: Any) -> Any:  # verbose=False: the pieces are cut here, not by the model
        more = {"verbose": False, **more}
        return tokenizer(text_target=texts[0], **kwargs, **more) if as_target else tokenizer(*texts, **kwargs, **more)

    budgets = [char_budget(max_length)] * len(columns[0])
    pieces = [[bounded_piece(t, b, side)[0] for t, b in zip(column, budgets)] for column in columns]
    enc = tokenize(pieces)
    rows = {key: list(values) for key, values in enc.items()}
    for i in range(len(budgets)):
        texts, row_pieces, row_enc, j = [c[i] for c in columns], [p[i] for p in pieces], enc, i
        while _too_short(row_enc, j, row_pieces, texts, max_length):  # rare: widen this row's pieces until they suffice
            budgets[i] *= 2
            row_pieces = [bounded_piece(t, budgets[i], side)[0] for t in texts]
            row_enc, j = tokenize([[p] for p in row_pieces]), 0
            for column, piece in zip(pieces, row_pieces):
                column[i] = piece
            for key in rows:
                rows[key][i] = row_enc[key][0]
    truncated = [len(ids) > max_length for ids in rows["input_ids"]]
    long_rows = [i for i, t in enumerate(truncated) if t]
    if long_rows:
        with truncating_on(tokenizer, side):
            cut = tokenize([[column[i] for i in long_rows] for column in pieces], truncation=True, max_length=max_length)
        for key in rows:
            for n, i in enumerate(long_rows):
                rows[key][i] = cut[key][n]
    return rows, truncated
