"""Where the bundled configs, recipes and data live: inside the installed package, or beside it in a checkout."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (PACKAGE_DIR / name, PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"llmft's {name}/ folder is missing next to {PACKAGE_DIR}; reinstall llmft")


def conf_dir() -> Path:
    """The primary configs and groups (`conf/`)."""
    return _find("conf")


def recipes_dir() -> Path:
    """The ready experiments (`recipes/`)."""
    return _find("recipes")


def resources_dir() -> Path:
    """Package data: the bundled data sets."""
    return PACKAGE_DIR / "resources"


def package_dir() -> Path:
    return Path(__file__).resolve().parent
