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
    cfg.family = "tabular"  # no module registered under that name
    with pytest.raises(UserError) as ex:
        get_task(cfg)
    message = str(ex.value)
    assert "\n" not in message and "tabular" in message and "classification" in message


def test_unknown_family_on_the_command_line_exits_2_in_one_line(tmp_path):
    proc = cli(["train", "task=sentiment", "task.family=tabular", "trainer.dry_run=true"], tmp_path, check=False)
    assert proc.returncode == 2
    assert "family" in proc.stderr and "Traceback" not in proc.stderr


def test_every_family_is_registered_and_satisfies_the_protocol():
    from llmft.tasks import FAMILIES, get_task
    from llmft.tasks.base import Task

    members = [m for m in vars(Task) if not m.startswith("_")] + list(Task.__annotations__)
    tags: dict[str, set] = {}
    for name, family in FAMILIES.items():
        task = get_task(family.options(family=name))
        assert isinstance(task, Task), name
        assert all(hasattr(task, m) for m in members), (name, [m for m in members if not hasattr(task, m)])
        tags.setdefault(task.auto_class_name, set()).add(task.pipeline_tag)
    # each head names its own pipeline tag for the model card (regression shares classification's head and tag)
    assert all(len(t) == 1 for t in tags.values()) and len(set.union(*tags.values())) == len(tags)


def test_no_module_outside_tasks_branches_on_a_family():
    """A caller asks the task object; `TaskFamily`, `.family ==/is/in` and family names compared or looked up stay in
    llmft/tasks/ (and the schema, config.py)."""
    from llmft.tasks import FAMILIES

    names = "|".join(FAMILIES)
    literal = rf"""(?P<q>["'])({names})(?P=q)"""
    # a family name compared or looked up in the registry; the same word as a plain string (OpenAI's "embedding" field) is not a branch
    rules = [
        re.compile(r"\bTaskFamily\b"),
        re.compile(r"\bfamily\s*(==|!=|is|in|not in)\b"),
        re.compile(rf"(==|!=|\bin|\bis|FAMILIES\[)\s*\(?{literal}"),
        re.compile(rf"{literal}\s*(==|!=|in\b)"),
    ]
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("tasks/") or relative == "config.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(rule.search(line) for rule in rules):
                offenders.append(f"llmft/{relative}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_an_option_of_another_family_fails_at_compose_time_in_one_line(tmp_path):
    proc = cli(["train", "task=qa", "task.focal_gamma=2", "trainer.dry_run=true"], tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "task.focal_gamma" in proc.stderr and "doc_stride" in proc.stderr  # names the key and what qa takes
    proc = cli(["train", "task=sentiment", "task.max_answer_length=9", "trainer.dry_run=true"], tmp_path, check=False)
    assert proc.returncode == 2 and "task.max_answer_length" in proc.stderr


def test_a_task_option_given_the_family_of_another_schema_is_one_line(tmp_path):
    proc = cli(["train", "task=summarization", "task.family=extractive_qa", "trainer.dry_run=true"], tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "task.family=extractive_qa" in proc.stderr and "task=" in proc.stderr


def test_a_run_saved_with_every_familys_keys_still_loads(tmp_path):
    """Runs saved before options were per family hold all families' keys in `task`: eval and generate still read
    them (other families' keys dropped); a key no family knows is still refused."""
    from omegaconf import OmegaConf

    from llmft.commands.common import load_run_config
    from llmft.config import TrainConfig
    from llmft.errors import UserError
    from llmft.runs.run_folder import RunFolder
    from llmft.tasks.options import ClassificationOptions, ExtractiveQAOptions, TextGenerationOptions

    legacy = OmegaConf.to_container(OmegaConf.structured(TrainConfig))
    for schema in (ClassificationOptions, ExtractiveQAOptions, TextGenerationOptions):
        legacy["task"].update(
            {k: v for k, v in OmegaConf.to_container(OmegaConf.structured(schema)).items() if k not in legacy["task"]}
        )
    legacy["task"].update(family="extractive_qa", doc_stride=32, focal_gamma=0.0)
    saved = RunFolder(tmp_path).saved_config
    saved.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(legacy, saved)
    config = load_run_config(tmp_path, TrainConfig)
    assert type(config.task) is ExtractiveQAOptions and config.task.doc_stride == 32
    legacy["task"]["made_up"] = 1
    OmegaConf.save(legacy, saved)
    with pytest.raises(UserError, match="made_up"):
        load_run_config(tmp_path, TrainConfig)
