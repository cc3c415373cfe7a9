"""The error types (the ground floor: imports nothing of llmft). User mistakes become one readable line; anything
else stays a traceback (it is our bug). Translating Hydra's and OmegaConf's errors into those lines is the edge's job
(llmft/cli_errors.py)."""

from __future__ import annotations

import difflib
from typing import Iterable


class UserError(Exception):
    """A mistake in config, data or paths that the user can fix; the message says how."""


class ConfigError(ValueError):
    """A config that composes but is inconsistent; the message is one line for the user."""


class Stopped(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM where no phase stops on its own (the training loop and the final scoring do): the
    command ends with one line naming the signal and what was kept, exit 128 + signal (cli.main)."""

    def __init__(self, signum: int, detail: str = "") -> None:
        super().__init__(detail)
        self.signum, self.detail = int(signum), detail


def closest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def unknown_key_message(full_key: str, valid: list[str]) -> str:
    key = full_key.rsplit(".", 1)[-1]
    where = f" in '{full_key.rsplit('.', 1)[0]}'" if "." in full_key else ""
    return f"unknown config key '{full_key}'{closest(key, valid)}; valid keys{where}: {', '.join(valid)}"
