"""The shape the code promises (issue 12): thin commands, a loop that reads on one screen, and one strategy object that
alone knows whether the model runs on one process, under DDP or under FSDP."""

from __future__ import annotations

import ast
import re
from pathlib import Path

LLMFT = Path(__file__).resolve().parent.parent / "llmft"
SCREEN = 60  # lines: a function a reader sees whole


def _function_lengths(path: Path) -> dict[str, int]:
    tree = ast.parse(path.read_text())
    return {
        node.name: node.end_lineno - node.lineno + 1
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }


def test_no_function_in_commands_is_longer_than_a_screen():
    long = {
        f"{path.name}:{name}": n
        for path in sorted((LLMFT / "commands").glob("*.py"))
        for name, n in _function_lengths(path).items()
        if n > SCREEN
    }
    assert long == {}


def test_fit_reads_on_one_screen():
    assert _function_lengths(LLMFT / "engine" / "loop.py")["fit"] <= SCREEN


def test_only_the_engine_names_the_parallel_strategies():
    """FSDP/DDP (and the schema's `Strategy` members) are named in engine/ and the schema (config.py, config_types.py) alone: everything else asks
    the strategy object."""
    pattern = re.compile(r"(?i:fsdp|\bddp\b|DistributedDataParallel|fully_shard|sharded)|\bStrategy\.\w+")
    named = [
        f"{path.relative_to(LLMFT)}:{number}: {line.strip()}"
        for path in sorted(LLMFT.rglob("*.py"))
        if path.parent.name != "engine" and path.name not in ("config.py", "config_types.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert named == []
