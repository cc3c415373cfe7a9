"""`task.data.streaming=true`: train on a JSONL, text or Parquet file bigger than memory. Rows are read lazily in file order,
tokenized by the task as they come and cut into blocks (raw text: documents joined by EOS, max_length tokens a block)
or packed (task.packing: whole examples per row) or kept one example a row. Nothing is shuffled: shuffle the file
once beforehand. The run's length is trainer.max_steps; when the file runs out first it is read again from its start.

Resume is exact without replay: every resumable checkpoint saves where the stream stands after its last batch (the
file's byte offset — for Parquet the row group and the row in it (llmft/data/parquet_rows.py) —, the pass over it,
and the tokens read but not yet in a block), and a resumed run continues there.
The eval and test rows are the split files next to it (validation.jsonl, test.parquet, ...) or, without them, the
file's first rows (task.data.max_eval_samples, default 200, for each), which the stream then skips."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from llmft.config import DataConfig, TextUnit, TrainConfig
from llmft.data import loading, parquet_rows
from llmft.errors import UserError

Position = dict[str, Any]  # {"pass", "offset" (or Parquet's "group", "row"), "buffer": [ids] or [[ids, labels], ...]}
IGNORE = -100  # transformers' ignore index (as in packing.py)
HELD_OUT = 200  # eval and test rows taken from the head of the file when it has no split files
TOKENIZE_AT_ONCE = 256  # rows per tokenizer call (the position still moves row by row)


def check(config: TrainConfig, task: Any, world: int) -> None:
    """Refuse, in one line, what a stream cannot do."""
    data, trainer = config.task.data, config.trainer
    if trainer.max_steps <= 0:
        raise UserError("task.data.streaming=true needs trainer.max_steps: a stream has no length to count epochs in")
    if not task.packs:
        raise UserError(f"task.data.streaming=true trains decoder-only (causal_lm) tasks, not {config.task.family}")
    refused = {
        "task.data.sources": bool(data.sources),
        "task.data.dedup": data.dedup,
        "task.data.folds": bool(data.folds),
        "trainer.group_by_length": bool(trainer.group_by_length),
        "torchrun": world > 1,
    }
    what = next((k for k, v in refused.items() if v), None)
    if what is not None:
        raise UserError(f"task.data.streaming=true does not combine with {what} (it needs every row in memory, or one process)")


def open_stream(cfg: DataConfig) -> tuple[dict[str, Any], "Stream"]:
    """The eval and test rows (in memory) and the train stream after them."""
    import datasets

    files = loading.local_files(cfg)
    if files is None:
        raise UserError(f"task.data.streaming=true reads local JSONL, text or Parquet files; '{cfg.path}' is not one")
    train = files[cfg.train_split]
    fmt = "parquet" if Path(train).suffix.lower() == ".parquet" else loading._format_of(train, cfg)
    if fmt not in ("json", "text", "parquet") or (fmt == "json" and Path(train).suffix.lower() == ".json"):
        raise UserError(
            f"task.data.streaming=true reads JSON Lines (.jsonl), text (.txt) or Parquet (.parquet) files, not {Path(train).name}"
        )
    stream = Stream(train, fmt, cfg.text_columns[0], cfg.text_unit)
    held = cfg.max_eval_samples or HELD_OUT
    splits, start = {}, {"pass": 0, **stream.first, "buffer": None}
    for role, name in (("eval", cfg.eval_split), ("test", cfg.test_split)):
        if name in files:
            splits[role] = loading.cap(loading.load_raw(_only(cfg, name, files[name]))[name], role, cfg)
            continue
        rows = list(itertools.islice(stream.rows(stream.cursor(start)), held))
        if len(rows) < held:
            raise UserError(
                f"{train} has too few rows to hold {held} out for {role} ahead of the stream; give a "
                f"{name} file or a smaller task.data.max_eval_samples"
            )
        start = {**start, **rows[-1][1]}
        splits[role] = datasets.Dataset.from_list([row for row, _ in rows])
    stream.start = start
    return splits, stream


def _only(cfg: DataConfig, split: str, file: str) -> DataConfig:
    from dataclasses import replace

    return replace(cfg, streaming=False, data_files={split: file}, train_split=split)


class Stream:
    """One file read lazily: rows with the cursor after each (a byte offset; for Parquet a row group and row)."""

    def __init__(self, path: str, fmt: str, column: str, unit: TextUnit):
        self.path, self.fmt, self.column, self.unit = path, fmt, column, unit
        self.first: dict[str, int] = dict(parquet_rows.FIRST) if fmt == "parquet" else {"offset": 0}
        self.start: Position = {"pass": 0, **self.first, "buffer": None}

    def cursor(self, position: Position) -> dict[str, int]:
        """The part of a position that says where in the file the next row is."""
        return {key: position[key] for key in self.first}

    def rows(self, cursor: dict[str, int]) -> Iterator[tuple[dict[str, Any], dict[str, int]]]:
        """(row, cursor after it) from `cursor` to the file's end: Parquet rows, JSON objects, or text lines /
        paragraphs (a file as one document cannot stream: it is read as paragraphs)."""
        if self.fmt == "parquet":
            yield from parquet_rows.rows(self.path, cursor)
            return
        yield from ((row, {"offset": end}) for row, end in self._lines(cursor["offset"]))

    def _lines(self, offset: int) -> Iterator[tuple[dict[str, Any], int]]:
        with open(self.path, "rb") as handle:
            handle.seek(offset)
            lines: list[str] = []
            while line := handle.readline():
                text = line.decode("utf-8-sig" if handle.tell() == len(line) else "utf-8").rstrip("\r\n")
                if self.fmt == "json":
                    if text.strip():
                        yield self._json(text, handle.tell()), handle.tell()
                elif self.unit is TextUnit.line:
                    if text.strip():
                        yield {self.column: text}, handle.tell()
                elif text.strip():
                    lines.append(text)
                elif lines:
                    yield {self.column: "\n".join(lines)}, handle.tell()
                    lines = []
            if lines:
                yield {self.column: "\n".join(lines)}, handle.tell()

    def _json(self, text: str, offset: int) -> dict[str, Any]:
        try:
            row = json.loads(text)
        except ValueError as ex:
            raise UserError(f"{self.path}: a line ending at byte {offset} is not JSON ({ex})") from None
        if not isinstance(row, dict):
            raise UserError(f"{self.path}: a line ending at byte {offset} is not a JSON object")
        return row

    def passes(self, position: Position) -> Iterator[tuple[list[dict[str, Any]], Position]]:
        """Rows in tokenizer-sized chunks, each row's position after it, from `position` on, the file read again and
        again (pass 1, 2, ...) from its start after the held-out rows."""
        pass_, cursor = position["pass"], self.cursor(position)
        while True:
            seen = False
            for chunk in _chunks(self.rows(cursor), TOKENIZE_AT_ONCE):
                seen = True
                yield [row for row, _ in chunk], [{"pass": pass_, **end} for _, end in chunk]
            if not seen and cursor == self.cursor(self.start):
                raise UserError(f"{self.path} has no rows to train on after the held-out eval and test rows")
            pass_, cursor = pass_ + 1, self.cursor(self.start)


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def blocks(stream: Stream, task: Any, position: Position) -> Iterator[tuple[dict[str, list[int]], Position]]:
    """Training rows and the stream's position after each: blocks of raw text, packed examples, or one example a row."""
    maker = _TextBlocks(task) if task.chunked and task.rows is None else _Examples(task)
    maker.buffer = position.get("buffer") or maker.empty()
    for rows, ends in stream.passes(position):
        for tokens, end in zip(maker.encode(rows), ends):
            for block in maker.add(tokens):
                yield block, {**end, "buffer": maker.saved()}


class _TextBlocks:
    """Raw text: documents (each + EOS) joined and cut into max_length blocks; the tail waits for the next document."""

    def __init__(self, task: Any):
        self.task, self.length = task, task.max_length
        self.buffer: list[int] = []

    def empty(self) -> list[int]:
        return []

    def encode(self, rows: list[dict[str, Any]]) -> list[list[int]]:
        column = self.task.cfg.response_column or self.task.cfg.data.text_columns[0]
        texts = [row.get(column) for row in rows]
        ids = iter(self.task.encode_documents({column: texts})["input_ids"])  # blank documents dropped
        return [next(ids) if isinstance(t, str) and t.strip() else [] for t in texts]

    def add(self, tokens: list[int]) -> Iterator[dict[str, list[int]]]:
        self.buffer.extend(tokens)
        while len(self.buffer) >= self.length:
            block, self.buffer = self.buffer[: self.length], self.buffer[self.length :]
            yield {"input_ids": block, "labels": block}

    def saved(self) -> list[int]:
        return list(self.buffer)


class _Examples:
    """Prompt/response or chat rows encoded by the task; with task.packing, whole examples packed into max_length rows
    (positions restart at each), else one example a row. Rows with no supervised token are skipped."""

    def __init__(self, task: Any):
        self.task, self.length, self.packing = task, task.max_length, task.cfg.packing
        self.buffer: list[list[list[int]]] = []

    def empty(self) -> list[list[list[int]]]:
        return []

    def encode(self, rows: list[dict[str, Any]]) -> list[Optional[list[list[int]]]]:
        encoded = [self.task.encode(row) for row in rows]
        return [[e["input_ids"], e["labels"]] if e["supervised"] else None for e in encoded]

    def add(self, example: Optional[list[list[int]]]) -> Iterator[dict[str, list[int]]]:
        if example is None:
            return
        if not self.packing:
            yield {"input_ids": example[0], "labels": example[1]}
            return
        if self.buffer and sum(len(ids) for ids, _ in self.buffer) + len(example[0]) > self.length:
            block, self.buffer = self._packed(), [example]  # before the yield: the position saved with it holds `example`
            yield block
            return
        self.buffer.append(example)

    def _packed(self) -> dict[str, list[int]]:
        # an example's first token is context, as at the start of a row (packing.pack does the same)
        return {
            "input_ids": [t for ids, _ in self.buffer for t in ids],
            "labels": [t for _, labels in self.buffer for t in [IGNORE, *labels[1:]]],
            "position_ids": [p for ids, _ in self.buffer for p in range(len(ids))],
        }

    def saved(self) -> list[list[list[int]]]:
        return [list(e) for e in self.buffer]


class StreamSampler:
    """What the loop reads of a batch sampler: an 'epoch' as long as the run (the file repeats inside it), and the
    batch it asks the loader to start from."""

    num_batches = 2**62

    def __init__(self) -> None:
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, batches_done: int) -> None:
        self.epoch, self.start = epoch, batches_done


class StreamingLoader:
    """Collated batches of stream blocks, from the position the loop sets (a resumed run: the saved stream position
    of that batch; otherwise the stream is read from its start, skipping the batches already trained on)."""

    def __init__(self, stream: Stream, task: Any, batch_size: int, collate: Callable[[list[Any]], Any]):
        self.stream, self.task, self.batch_size, self.collate = stream, task, batch_size, collate
        self.batch_sampler = StreamSampler()
        self.last: Optional[dict[str, Any]] = None  # {"batches": n, "stream": position after batch n}
        self.restored: Optional[dict[str, Any]] = None

    def __len__(self) -> int:
        return StreamSampler.num_batches

    def position(self) -> Optional[dict[str, Any]]:
        return self.last

    def __iter__(self) -> Iterator[Any]:
        done = self.batch_sampler.start
        if self.restored is not None and self.restored["batches"] == done:
            position, skip = self.restored["stream"], 0
        else:
            position, skip = self.stream.start, done  # never a resumed run's case: it saved its position
        source = blocks(self.stream, self.task, position)
        batches = done - skip
        while chunk := list(itertools.islice(source, self.batch_size)):
            batches += 1
            if batches <= done:
                continue
            self.last = {"batches": batches, "stream": chunk[-1][1]}
            yield self.collate([block for block, _ in chunk])


def sample(stream: Stream, task: Any, rows: int = 64) -> Any:
    """The first training rows of the stream, as a Dataset (for the memory plan)."""
    import datasets

    return datasets.Dataset.from_list([block for block, _ in itertools.islice(blocks(stream, task, stream.start), rows)])


def data_position(loader: Any) -> Optional[dict[str, Any]]:
    """Where a streaming loader stands (saved with each resumable checkpoint); None for an in-memory loader."""
    return loader.position() if isinstance(loader, StreamingLoader) else None


def restore(loader: Any, saved: Optional[dict[str, Any]]) -> None:
    if isinstance(loader, StreamingLoader):
        loader.restored = saved
