"""Task families are plug-ins: a registry maps `task.family` to a class that satisfies the Task Protocol, an unknown
family is one line, and no code outside llmft/tasks/ (and the schema in config.py) branches on a family."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import cli

PACKAGE = Path(__file__).resolve().parents[1] / "llmft"


def test_unknown_family_is_one_line_not_a_fall_through():
    from llmft.config import TaskConfig
    from llmft.errors import UserError
    from llmft.tasks import get_task

    cfg = TaskConfig()
    cfg.family = "ner"  # a family the enum could name before its module is registered
    with pytest.raises(UserError) as ex:
        get_task(cfg)
    message = str(ex.value)
    assert "\n" not in message and "ner" in message and "classification" in message


def test_unknown_family_on_the_command_line_exits_2_in_one_line(tmp_path):
    proc = cli(["train", "task=sentiment", "task.family=ner", "trainer.dry_run=true"], tmp_path, check=False)
    assert proc.returncode == 2
    assert "family" in proc.stderr and "Traceback" not in proc.stderr


def test_every_family_is_registered_and_satisfies_the_protocol():
    from llmft.config import TaskConfig, TaskFamily
    from llmft.tasks import FAMILIES, get_task
    from llmft.tasks.base import Task

    assert sorted(FAMILIES) == sorted(f.value for f in TaskFamily)
    members = [m for m in vars(Task) if not m.startswith("_")] + list(Task.__annotations__)
    tags = set()
    for family in TaskFamily:
        task = get_task(TaskConfig(family=family))
        assert isinstance(task, Task), family
        assert all(hasattr(task, m) for m in members), (family, [m for m in members if not hasattr(task, m)])
        if family is not TaskFamily.classification:  # no sampler weights: uniform draws, no hasattr probe needed
            assert task.sample_weights([]) is None
        tags.add(task.pipeline_tag)
    assert len(tags) == len(TaskFamily)  # each family names its own pipeline tag for the model card


def test_no_module_outside_tasks_branches_on_a_family():
    """A caller asks the task object; `TaskFamily`, `.family ==/is/in` and family names as literals stay in llmft/tasks/
    (and the schema, config.py)."""
    from llmft.config import TaskFamily

    names = "|".join(f.value for f in TaskFamily)
    rules = [re.compile(r"\bTaskFamily\b"), re.compile(r"\bfamily\s*(==|!=|is|in|not in)\b"),
             re.compile(rf"""(["'])({names})\1""")]
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("tasks/") or relative == "config.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(rule.search(line) for rule in rules):
                offenders.append(f"llmft/{relative}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
