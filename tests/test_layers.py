"""The import rules a reviewer can rerun (issue 26): no import cycle, imports run downward through the layers only,
and no verb imports another verb."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

LLMFT = Path(__file__).resolve().parent.parent / "llmft"
VERBS = {"train", "eval", "generate", "data", "export", "serve", "explain", "prune"}  # commands/<verb>.py

# Bottom to top. A module may import its own layer and the layers below it, never one above.
LAYERS = [
    {"errors"},
    {
        "config_types",
        "config",
        "deploy_config",
        "distill_config",
        "explain_config",
        "prune_config",
        "data_report_config",
        "paths",
        "resources",
        "source_specs",
        "trust_config",
    },
    {"runs"},
    {"reporting"},
    {"models"},
    {"data"},
    {"evaluation", "inference"},
    {"engine"},
    {"tasks"},
    {"export", "serving"},
    {"schemas", "cli_errors", "commands"},  # the edge: the only Hydra users
    {"cli", "__main__"},
]


@functools.cache
def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(LLMFT.rglob("*.py")):
        parts = path.relative_to(LLMFT.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The llmft modules `path` imports, at the top or inside functions alike."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "llmft":
            names = [f"{node.module}.{a.name}" for a in node.names]
            out |= {n if n in modules else node.module for n in names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "llmft"}
    resolved = set()
    for name in out:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        resolved.add(name)
    return resolved


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(p, modules) - {m, "llmft"} for m, p in modules.items()}


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    return next(i for i, names in enumerate(LAYERS) if top in names)


def test_every_module_has_a_layer():
    assert [m for m in _graph() if m != "llmft" and not any(m.split(".")[1] in names for names in LAYERS)] == []


def test_no_import_cycle():
    graph, state, cycles = _graph(), {}, []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(path[path.index(target) :] + [target] if target in path else [node, target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_imports_run_downward_only():
    upward = [
        f"{m} -> {t}"
        for m, targets in _graph().items()
        if m != "llmft"
        for t in targets
        if t != "llmft" and _layer(t) > _layer(m)
    ]
    assert upward == []


def test_no_verb_imports_another_verb():
    crossing = [
        f"{m} -> {t}"
        for m, targets in _graph().items()
        if m.startswith("llmft.commands.")
        for t in targets
        if t.startswith("llmft.commands.") and t.rsplit(".", 1)[1] in VERBS and t != m and m.rsplit(".", 1)[1] in VERBS
    ]
    assert crossing == []


# Libraries of the optional extras (pyproject.toml): a module importing one at its top stays a lazy import elsewhere.
OPTIONAL = {
    "captum",
    "bitsandbytes",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "fastapi",
    "uvicorn",
    "prometheus_client",
    "mlflow",
    "wandb",
    "tensorboard",
    "trl",
    "opacus",
    "xgrammar",
    "gguf",
    "vllm",
    "evaluate",
    "httpx",
    "starlette",
}
LAZY_ALLOWED = {"llmft.cli", "llmft.__main__"}  # the verb dispatch: `llmft --help` imports no verb


def _top_level_imports(path: Path) -> tuple[set[str], set[str]]:
    """(third-party top-level packages, llmft modules) imported at the top of `path`."""
    modules, third, internal = _modules(), set(), set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = _imports_of(node, modules)
            third |= {n.split(".")[0] for n in names if not n.startswith("llmft")}
            internal |= {n for n in names if n.startswith("llmft")}
    return third, internal


def _imports_of(node: ast.AST, modules: dict[str, Path]) -> set[str]:
    if isinstance(node, ast.ImportFrom) and node.module:
        if node.module.split(".")[0] != "llmft":
            return {node.module}
        full = {f"{node.module}.{a.name}" for a in node.names}
        return {n for n in full if n in modules} or {node.module}
    return {a.name for a in node.names} if isinstance(node, ast.Import) else set()


@functools.cache
def _pulls_optional(module: str, seen: frozenset = frozenset()) -> bool:
    path = _modules().get(module)
    if path is None or module in seen:
        return False
    third, internal = _top_level_imports(path)
    return bool(third & OPTIONAL) or any(_pulls_optional(m, seen | {module}) for m in internal)


def test_internal_imports_sit_at_the_top_unless_they_pull_an_optional_library():
    modules, lazy = _modules(), []
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in (n for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))):
                targets = {t for t in _imports_of(node, modules) if t.startswith("llmft")}
                if targets and name not in LAZY_ALLOWED and not any(_pulls_optional(t) for t in targets):
                    lazy.append(f"{path.relative_to(LLMFT.parent)}:{node.lineno} {sorted(targets)}")
    assert lazy == []
