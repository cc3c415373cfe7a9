"""Every shipped config composes and validates; run folders never collide."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from llmft.cli import GROUPS, register_recipes
from llmft.commands.common import to_typed
from llmft.cli import register_configs
from llmft.schemas import schemas
from llmft.config import TrainConfig
from llmft.paths import conf_dir, recipes_dir

register_configs()
register_recipes()

OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((conf_dir() / g).glob("*.yaml"))]
RECIPES = sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def _compose(verb: str, overrides: list[str], hydra: bool = False):
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(verb, overrides=overrides, return_hydra_config=hydra)


@pytest.mark.parametrize("group, option", OPTIONS)
def test_every_group_option_composes_and_validates(group, option):
    extra = (
        ["task.data.path=data.csv"]
        if group == "task" and "path: ???" in (conf_dir() / "task" / f"{option}.yaml").read_text()
        else []
    )
    cfg = _compose("train", [f"{group}={option}", *extra])
    typed = to_typed(cfg, TrainConfig)
    assert isinstance(typed, TrainConfig)


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_composes(recipe):
    typed = to_typed(_compose("train", [f"recipe={recipe}"]), TrainConfig)
    assert typed.trainer.epochs >= 1


def test_every_yaml_starts_with_a_comment_line():
    for path in [*conf_dir().rglob("*.yaml"), *recipes_dir().glob("*.yaml")]:
        first = path.read_text().splitlines()[0]
        assert first.startswith("#"), path


def test_eval_and_generate_compose():
    assert set(schemas()) == {"train", "eval", "generate", "serve", "export", "data", "explain", "prune"}
    cfg = _compose("eval", ["run=somewhere", "split=validation"])
    assert cfg.split == "validation"
    cfg = _compose("generate", ["run=somewhere", "prompt=hi"])
    assert cfg.prompt == "hi"
    cfg = _compose("serve", ["model=tiny-gpt2", "port=9000"])
    assert (cfg.port, cfg.host, cfg.model.name_or_path) == (9000, "127.0.0.1", "builtin:tiny-gpt2")
    cfg = _compose("data", ["task=sft", "rows=3", "task.data.dedup=true"])
    assert (cfg.rows, cfg.task.data.dedup) == (3, True)


def test_run_folders_of_runs_started_in_the_same_second_differ():
    dirs = set()
    for _ in range(3):
        cfg = _compose("train", [], hydra=True)
        dirs.add(OmegaConf.to_container(cfg.hydra.run, resolve=True)["dir"])
    assert len(dirs) == 3  # microseconds in the folder name
    assert all(Path(d).parts[:2] == ("outputs", "train") for d in dirs)
