"""Write the config reference (docs' `config-reference.md`) from the schemas, so it cannot drift from them.

Every field of every verb's schema (the dataclasses Hydra checks a config against) and of every task family's options
becomes a table row: key, type (an enum's choices), the schema's default, and the comment written beside the field.
The mkdocs hook (tools/mkdocs_hooks.py) calls `reference()` at every docs build; `python tools/gen_config_reference.py
[out.md]` prints or writes the same page.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import io
import sys
import tokenize
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HEADER = """# Config reference

Generated from the schemas (the dataclasses in `llmft/config.py`, `llmft/deploy_config.py`,
`llmft/data_report_config.py`, `llmft/explain_config.py` and `llmft/tasks/options.py`) by
`tools/gen_config_reference.py` at every docs build: it cannot drift from the code. A key not listed here is refused
at compose time, naming the closest valid one.

Defaults are the schema's. A group option (`model=bert-base`, `task=sft`, `optimizer=sgd`, ...) is a YAML file under
`conf/` that sets its own values on top; `llmft VERB --help` prints the composed config with any overrides you give.
"""


def verb_schemas() -> dict[str, type]:
    """verb -> the dataclass its primary config names first (`<verb>_schema` in Hydra's ConfigStore)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from llmft.cli import VERBS, register_configs

    register_configs()
    store = ConfigStore.instance()
    schemas = {}
    for verb in VERBS:
        if f"{verb}_schema.yaml" in store.repo:  # sweep-report has none: it takes a folder
            schemas[verb] = OmegaConf.get_type(store.load(f"{verb}_schema.yaml").node)
    return schemas


def field_comments(cls: type) -> dict[str, str]:
    """field name -> the comment lines just above it and the comment beside it (`name: T = v  # ...`)."""
    source = inspect.getsource(cls)
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = source.splitlines()
    out: dict[str, str] = {}
    names = {f.name for f in dataclasses.fields(cls)}
    for number, line in enumerate(lines, start=1):
        name = line.strip().split(":", 1)[0]
        if name not in names or name in out or not line.startswith("    ") or line.startswith("     "):
            continue
        above = _comment_block(lines, comments, number, -1)
        out[name] = ": ".join(text for text in (" ".join(above), comments.get(number, "")) if text)
    return out


def _comment_block(lines: list[str], comments: dict[int, str], number: int, step: int) -> list[str]:
    """The comment-only lines next to line `number` (1-based), walking up (step -1) or down (+1)."""
    block, at = [], number + step
    while 1 <= at <= len(lines) and lines[at - 1].strip().startswith("#") and at in comments:
        block.append(comments[at])
        at += step
    return block[::-1] if step < 0 else block


def _type_name(hint: object) -> str:
    inner = [a for a in typing.get_args(hint) if a is not type(None)]
    if len(inner) == 1 and len(typing.get_args(hint)) == 2:  # Optional[X]
        return f"{_type_name(inner[0])} or `null`"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in hint)
    text = getattr(hint, "__name__", None) if isinstance(hint, type) else None
    text = text or str(hint).replace("typing.", "")
    return text.replace("NoneType", "None").replace("|", "\\|")


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if value == "???":
        return "required"
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return '`""`'
    if isinstance(value, list):
        value = "[" + ", ".join(map(str, value)) + "]"
    return f"`{value}`".replace("|", "\\|")


def _is_schema(hint: object) -> bool:
    inner = [a for a in typing.get_args(hint) if a is not type(None)]
    hint = inner[0] if len(inner) == 1 else hint
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _unwrap(hint: object) -> type:
    inner = [a for a in typing.get_args(hint) if a is not type(None)]
    return inner[0] if len(inner) == 1 else hint  # type: ignore[return-value]


def table(cls: type, prefix: str, skip: frozenset[str] = frozenset()) -> tuple[list[str], list[tuple[str, type]]]:
    """The rows of `cls`'s plain fields under `prefix`, and its nested schemas as (key, class)."""
    hints = typing.get_type_hints(cls)
    notes = field_comments(cls)
    rows = ["| key | type | default | what |", "|---|---|---|---|"]
    nested = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if _is_schema(hints[f.name]):
            nested.append((f"{prefix}{f.name}", _unwrap(hints[f.name])))
            continue
        note = notes.get(f.name, "").replace("|", "\\|")
        rows.append(f"| `{prefix}{f.name}` | {_type_name(hints[f.name])} | {_default(f)} | {note} |")
    return rows, nested


def section(title: str, cls: type, prefix: str, seen: dict[type, str], level: int = 3) -> list[str]:
    """A heading and table for `cls`, then one for each nested schema not documented before (else a pointer)."""
    if cls in seen:
        return [f"{'#' * level} `{title}`", "", f"The same fields as `{seen[cls]}` ({cls.__name__}).", ""]
    seen[cls] = title
    rows, nested = table(cls, prefix)
    out = [f"{'#' * level} `{title}`", "", f"Schema: `{cls.__module__}.{cls.__name__}`.", ""]
    out += (rows + [""]) if len(rows) > 2 else []
    for key, child in nested:
        out += section(key, child, f"{key}.", seen, level)
    return out


def families_section() -> list[str]:
    """Each task family's own options (beyond the shared `task.*` fields): `task.family` picks the schema."""
    from llmft.config import TaskConfig
    from llmft.tasks import FAMILIES

    shared = frozenset(f.name for f in dataclasses.fields(TaskConfig))
    out = [
        "## Task families",
        "",
        (
            "`task.family` picks one options schema: the shared `task.*` fields above, plus the "
            "family's own below. An option of another family fails at compose time."
        ),
        "",
    ]
    named: dict[type, str] = {}
    for name, entry in FAMILIES.items():
        out += [f"### `{name}`", ""]
        if entry.options in named:
            out += [f"The same options as `{named[entry.options]}`.", ""]
            continue
        named[entry.options] = name
        rows, _ = table(entry.options, "task.", skip=shared)
        out += (rows + [""]) if len(rows) > 2 else ["No options beyond the shared ones.", ""]
    return out


def reference() -> str:
    """The whole page, as markdown."""
    from llmft.cli import group_options

    out = [HEADER, "## Config groups", "", "| group | options |", "|---|---|"]
    out += [f"| `{g}` | {', '.join(f'`{o}`' for o in options)} |" for g, options in group_options().items()]
    out.append("")
    seen: dict[type, str] = {}
    for verb, schema in verb_schemas().items():
        out += [f"## `llmft {verb}`", ""]
        rows, nested = table(schema, "")
        out += (rows + [""]) if len(rows) > 2 else []
        for key, child in nested:
            out += section(key, child, f"{key}.", seen)
    out += families_section()
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    page = reference()
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(page)
    else:
        sys.stdout.write(page)
