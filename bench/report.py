"""What every benchmark script does with its table: print it, and append it to `--markdown` when given."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


def emit(text: str, markdown: Optional[Path]) -> None:
    print(text)
    if markdown:
        with Path(markdown).open("a") as f:
            f.write(text + "\n")
