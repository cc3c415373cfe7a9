"""The documentation (mkdocs.yml, docs/, README.md) holds to the code: every `llmft` command it shows composes, the site
builds with `--strict`, the config reference is generated from the schemas, and the README stays a landing page.

How a shown command is checked: each line of a ```bash / ```sh / ```console block (or a plain ``` block) that starts
with `llmft ` or `torchrun ... -m llmft ` (also after `&&`; `\\` continuations joined, `# comments` dropped) is
composed as its verb composes it (conf/ + recipes/ + the overrides, against the verb's schema) and turned into the
typed config (`to_typed`: unknown keys, wrong types, cross-field checks). A renamed or retyped option fails here.
Placeholders in angle brackets (`<run>`, `<run folder>`, `<day>/<time>`) stand for a path and are replaced by one:
composing does not open run folders or data files. `-m` lines compose every job of their sweep. Not composed: `-cd`
lines (their config folder is the reader's own; tests/test_audit_promises.py composes one) and `sweep-report`
(no config: its argument must be one folder).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import re
import shlex
import subprocess
import sys
import typing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
SHELL_BLOCKS = {"bash", "sh", "shell", "console", ""}
sys.path.insert(0, str(ROOT / "tools"))


def shown_commands(text: str) -> list[str]:
    """The `llmft ...` and `torchrun ... -m llmft ...` commands in the shell blocks of a markdown page."""
    found = []
    for lang, body in FENCE.findall(text):
        if lang not in SHELL_BLOCKS:
            continue
        for line in body.replace("\\\n", " ").splitlines():
            for part in line.strip().removeprefix("$ ").split("&&"):
                part = part.strip()
                if part.startswith("llmft ") or (part.startswith("torchrun ") and " -m llmft " in part):
                    found.append(part)
    return found


def _cases() -> list:
    return [
        pytest.param(command, id=f"{page.relative_to(ROOT)}:{n}")
        for page in PAGES
        for n, command in enumerate(shown_commands(page.read_text()))
    ]


def argv_of(command: str) -> list[str]:
    """The arguments after `llmft` as the shell would pass them, placeholders filled with a path."""
    words = shlex.split(re.sub(r"<[^<>\s]*(?: [^<>]*)?>", "placeholder", command), comments=True)
    return words[words.index("llmft") + 1 :] if words[0] == "torchrun" else words[1:]


def _jobs(args: list[str], multirun: bool) -> list[list[str]]:
    """One override list per job: the sweep's every combination under -m, else the overrides as given."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(args)
    sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
    if not multirun:
        assert not sweeps, f"{sweeps} sweep values without -m"
        return [args]
    return BasicSweeper.split_arguments(parsed, None)[0]


GROUPS = (
    "model",
    "task",
    "finetune",
    "optimizer",
    "scheduler",
    "precision",
    "logger",
    "recipe",
    "attack",
)  # attack: an eval group


def compose_typed(verb: str, overrides: list[str]) -> object:
    """What the verb does before any work: compose, then the typed config (cross-field checks run). Hydra composes the
    group choices and then applies the value overrides onto the result; the first step is cached per set of choices
    (it reads the YAML files: ~0.15 s), the second is Hydra's own code run on a copy."""
    import copy

    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf, open_dict

    from llmft.commands.common import to_typed

    parsed = OverridesParser.create().parse_overrides(overrides)
    groups = tuple(o.input_line for o in parsed if o.key_or_group.split("@")[0] in GROUPS or "/" in o.key_or_group)
    cfg = copy.deepcopy(_composed(verb, groups))
    ConfigLoaderImpl._apply_overrides_to_config([o for o in parsed if o.input_line not in groups], cfg)
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return to_typed(cfg, OmegaConf.get_type(cfg))


@functools.lru_cache(maxsize=1)
def _registered() -> None:
    """The schemas, recipes and resolvers in Hydra's stores: once (it reads every recipe, ~0.2 s)."""
    from llmft.cli import _register_all

    _register_all()


@functools.cache
def _composed(verb: str, groups: tuple[str, ...]) -> object:
    from hydra import compose, initialize_config_dir

    from llmft.paths import conf_dir

    _registered()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(verb, overrides=list(groups), return_hydra_config=True)


@pytest.mark.parametrize("command", _cases())
def test_every_command_shown_in_the_docs_composes(command):
    from llmft.cli import VERBS

    args = argv_of(command)
    verb, args = args[0], ["trainer.dry_run=true" if a == "--dry-run" else a for a in args[1:] if a not in ("-h", "--help")]
    assert verb in VERBS or verb in ("-h", "--help"), f"`{command}`: no verb {verb}"
    if verb in ("-h", "--help") or "-cd" in args:
        return
    if verb == "sweep-report":
        assert len(args) == 1 and not args[0].startswith("-"), command
        return
    multirun = "-m" in args or "--multirun" in args
    args = [a for a in args if a not in ("-m", "--multirun")]
    for plugin in ("joblib", "optuna", "submitit", "slurm"):
        if any(a.startswith("hydra/") and plugin in a for a in args) and not _plugin_installed(plugin):
            pytest.skip(f"the {plugin} Hydra plugin is not installed (pip install 'llmft[sweeps]')")
    for job in _jobs(args, multirun):
        compose_typed(verb, job)


def _plugin_installed(name: str) -> bool:
    module = {
        "joblib": "hydra_plugins.hydra_joblib_launcher",
        "optuna": "hydra_plugins.hydra_optuna_sweeper",
        "submitit": "hydra_plugins.hydra_submitit_launcher",
        "slurm": "hydra_plugins.hydra_submitit_launcher",
    }[name]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # no hydra_plugins package at all
        return False


def test_the_command_extraction_reads_what_a_shell_would():
    page = (
        "```bash\nllmft train task=sft \\\n  finetune=lora   # a comment\npip install x && llmft eval run=<run folder>\n"
        "torchrun --nproc-per-node 2 -m llmft train seed=1\n```\n```python\nllmft = 1\n```\n"
    )
    commands = shown_commands(page)
    assert [argv_of(c) for c in commands] == [
        ["train", "task=sft", "finetune=lora"],
        ["eval", "run=placeholder"],
        ["train", "seed=1"],
    ]


def test_a_renamed_option_in_a_shown_command_fails_to_compose():
    from hydra.errors import ConfigCompositionException

    from llmft.config import ConfigError

    with pytest.raises(ConfigCompositionException, match="epocs"):
        compose_typed("train", ["trainer.epocs=3"])
    with pytest.raises(ConfigError, match="finetune.merge=false"):
        compose_typed("train", ["finetune=qlora", "finetune.merge=true"])  # a cross-field check: to_typed runs


def test_the_docs_show_commands_for_every_verb_and_task_option():
    from llmft.cli import VERBS, group_options

    shown = [argv_of(c) for page in PAGES for c in shown_commands(page.read_text())]
    assert len(shown) >= 100
    assert {a[0] for a in shown} >= set(VERBS)
    tasks = {w.split("=", 1)[1] for a in shown for w in a if w.startswith("task=")}
    assert tasks >= set(group_options()["task"]), set(group_options()["task"]) - tasks


def test_the_readme_is_a_landing_page_under_150_lines():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 150
    for link in re.findall(r"\]\(((?:docs|bench)/[^)#]+)", readme):
        assert (ROOT / link).is_file(), link


def _leaf_keys(cls: type, prefix: str = "") -> list[str]:
    hints, keys = typing.get_type_hints(cls), []
    for f in dataclasses.fields(cls):
        inner = [a for a in typing.get_args(hints[f.name]) if a is not type(None)] or [hints[f.name]]
        child = inner[0] if len(inner) == 1 else None
        is_schema = isinstance(child, type) and dataclasses.is_dataclass(child)
        keys += _leaf_keys(child, f"{prefix}{f.name}.") if is_schema else [f"{prefix}{f.name}"]
    return keys


def test_the_config_reference_is_generated_from_every_schema_and_not_committed():
    import gen_config_reference

    from llmft.tasks import FAMILIES

    page = gen_config_reference.reference()
    schemas = gen_config_reference.verb_schemas()
    assert set(schemas) >= {"train", "eval", "generate", "serve", "export", "data", "explain"}
    keys = [k for schema in schemas.values() for k in _leaf_keys(schema)]
    keys += [f"task.{k}" for entry in FAMILIES.values() for k in _leaf_keys(entry.options) if "." not in k]
    same = set(re.findall(r"^### `([\w.]+)`\n\nThe same fields as `[\w.]+`", page, flags=re.MULTILINE))  # a repeated sub-schema
    missing = sorted({k for k in keys if f"| `{k}` |" not in page and k.rsplit(".", 1)[0] not in same})
    assert not missing, missing
    assert "| `trainer.cv_folds` | int | `0` | k-fold cross-validation" in page  # the comment beside the field
    assert not (ROOT / "docs" / "config-reference.md").exists(), "generated at build (tools/mkdocs_hooks.py): do not commit it"
    assert not (ROOT / "docs" / "benchmarks.md").exists(), "copied from bench/BENCHMARKS.md at build: do not commit it"


@pytest.mark.skipif(
    importlib.util.find_spec("material") is None, reason="mkdocs-material is not installed (pip install -e '.[docs]')"
)
def test_the_docs_build_with_strict(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    reference = (tmp_path / "site" / "config-reference" / "index.html").read_text()
    assert "trainer.cv_folds" in reference
    assert (tmp_path / "site" / "benchmarks" / "index.html").is_file()
