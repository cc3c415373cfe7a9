"""A Parquet file read lazily for `task.data.streaming=true` (llmft/data/streaming.py): row group by row group, a
bounded batch of rows at a time (pyarrow), each row with the cursor after it — (row group, rows of it read) — so a
resumed stream continues at the exact row without reading the groups before it."""

from __future__ import annotations

from typing import Any, Iterator

from llmft.errors import UserError

Cursor = dict[str, int]  # {"group": row group, "row": rows of that group already read}
FIRST: Cursor = {"group": 0, "row": 0}
BATCH_ROWS = 1024  # rows decoded at a time (memory stays bounded whatever a row group's size)


def rows(path: str, cursor: Cursor) -> Iterator[tuple[dict[str, Any], Cursor]]:
    """(row, cursor after it) from `cursor` to the file's end; the rows of a group before `cursor["row"]` are skipped
    (decoded a batch at a time, never the groups before)."""
    file = _open(path)
    for group in range(cursor["group"], file.num_row_groups):
        skip = cursor["row"] if group == cursor["group"] else 0
        if skip >= file.metadata.row_group(group).num_rows:
            continue
        read = 0
        for batch in file.iter_batches(batch_size=BATCH_ROWS, row_groups=[group]):
            if read + batch.num_rows <= skip:
                read += batch.num_rows
                continue
            first = max(skip - read, 0)
            for after, row in enumerate(batch.slice(first).to_pylist(), read + first + 1):
                yield row, {"group": group, "row": after}
            read += batch.num_rows


def _open(path: str) -> Any:
    import pyarrow
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pyarrow.ArrowInvalid, OSError) as ex:
        raise UserError(f"{path} is not a readable Parquet file ({ex})") from None
