"""The run folder's layout is spelled in one place, llmft/runs/run_folder.py; every other module asks RunFolder."""

from __future__ import annotations

import ast
from pathlib import Path

import llmft
from llmft.runs.run_folder import RunFolder

PACKAGE = Path(llmft.__file__).parent
OWNER = PACKAGE / "runs" / "run_folder.py"
# Fragments of run-folder paths: a string constant in code (not a docstring, not a message with spaces) holding one is
# a path spelled outside RunFolder.
FRAGMENTS = (
    "checkpoints",
    "eval.json",
    "metrics.jsonl",
    "run.json",
    "splits.json",
    "loss.png",
    "train.log",
    "trainer_state.pt",
    "loop_state.json",
    ".complete",
    ".llmft.lock",
    ".hydra",
    "overrides.yaml",
    "mlflow.db",
    "generations-",
    "step-",
    ".tmp",
    ".old",
)
JOINED_NAMES = ("best", "last", "tensorboard", "config.yaml")  # short names: a literal only when joined onto a path with /


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _spelled_paths(source: str) -> list[str]:
    tree = ast.parse(source)
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            text = node.value
            if not any(c.isspace() for c in text) and any(f in text for f in FRAGMENTS):
                found.append(text)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = node.right
            if isinstance(right, ast.Constant) and right.value in JOINED_NAMES + FRAGMENTS:
                found.append(f"/ {right.value!r}")
    return found


def test_only_run_folder_spells_run_folder_paths():
    offenders = {
        str(path.relative_to(PACKAGE)): spelled
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != OWNER and (spelled := _spelled_paths(path.read_text()))
    }
    assert offenders == {}


def test_the_rule_catches_a_spelled_path():
    assert _spelled_paths('x = run_dir / "checkpoints" / "best"\ny = f"step-{n}"\nz = out / "last"')
    assert not _spelled_paths('"""Writes eval.json."""\nraise UserError(f"{run} has no eval.json; start anew")\nloc = "best"')


def test_run_folder_paths(tmp_path):
    run = RunFolder(tmp_path / "run")
    root = tmp_path / "run"
    assert run.saved_config == root / ".hydra" / "config.yaml"
    assert run.saved_overrides == root / ".hydra" / "overrides.yaml"
    assert (run.manifest, run.metrics, run.splits, run.eval_json, run.loss_plot) == (
        root / "run.json",
        root / "metrics.jsonl",
        root / "splits.json",
        root / "eval.json",
        root / "loss.png",
    )
    assert (run.samples("eval"), run.samples("test")) == (root / "generations-eval.jsonl", root / "generations-test.jsonl")
    assert (run.tensorboard, run.mlflow_db, run.lock_file) == (root / "tensorboard", root / "mlflow.db", root / ".llmft.lock")
    assert (run.checkpoints, run.best, run.last) == (
        root / "checkpoints",
        root / "checkpoints" / "best",
        root / "checkpoints" / "last",
    )
    assert run.named_checkpoint("best") == run.best and run.named_checkpoint("last") == run.last
    assert run.named_checkpoint("elsewhere") is None
    assert run.step_checkpoint(42) == root / "checkpoints" / "step-0000042"
    assert RunFolder.of_checkpoints(run.checkpoints) == run
    assert RunFolder.trainer_state(run.last) == run.last / "trainer_state.pt"
    assert RunFolder.loop_state(run.last) == run.last / "loop_state.json"
    assert RunFolder.temp_file(run.metrics) == root / ".metrics.jsonl.tmp"
    assert RunFolder.swap_old(run.last) == run.checkpoints / ".last.old"
    assert RunFolder.swap_temp_prefix(run.last) == ".last.tmp-"


def test_run_folder_finds_its_checkpoints_on_disk(tmp_path):
    run = RunFolder(tmp_path / "2026-01-01" / "10-00-00")
    for folder in (
        run.step_checkpoint(20),
        run.step_checkpoint(3),
        run.last,
        run.checkpoints / ".last.tmp-x1",
        run.checkpoints / ".best.tmp-x2",
        run.checkpoints / ".last.old",
    ):
        folder.mkdir(parents=True)
    RunFolder.complete_marker(run.checkpoints / ".last.tmp-x1").touch()
    RunFolder(tmp_path / "2026-01-01" / "11-00-00").root.mkdir()  # no checkpoints: not a run to resume
    assert run.step_checkpoints() == [run.step_checkpoint(3), run.step_checkpoint(20)]  # oldest first
    assert run.partial_saves() == [run.checkpoints / ".best.tmp-x2", run.checkpoints / ".last.tmp-x1"]
    assert RunFolder.swap_temps(run.last) == [run.checkpoints / ".last.tmp-x1"]
    assert run.swap_leftovers_of_last() == [run.checkpoints / ".last.old", run.checkpoints / ".last.tmp-x1"]
    assert RunFolder.runs_under(tmp_path) == [run]
