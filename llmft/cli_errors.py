"""Hydra's and OmegaConf's errors as one line for the user (the edge: only cli.py and commands/ import this)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional

from llmft.errors import ConfigError, UserError, closest, unknown_key_message
from llmft.schemas import schema_named


def _field_names(object_type: Any) -> list[str]:
    if object_type is not None and dataclasses.is_dataclass(object_type):
        return [f.name for f in dataclasses.fields(object_type)]
    return []


def _omegaconf_message(ex: Any) -> Optional[str]:
    from omegaconf.errors import (
        ConfigAttributeError,
        ConfigKeyError,
        InterpolationResolutionError,
        MissingMandatoryValue,
        ValidationError,
    )

    first_line = str(getattr(ex, "msg", ex)).splitlines()[0]
    full_key = getattr(ex, "full_key", None) or getattr(ex, "key", None) or "?"
    if isinstance(ex, (ConfigAttributeError, ConfigKeyError)):
        return unknown_key_message(str(full_key), _field_names(getattr(ex, "object_type", None)))
    if isinstance(ex, MissingMandatoryValue):
        return f"config key '{full_key}' has no value; set it on the command line, e.g. {full_key}=..."
    if isinstance(ex, ValidationError):
        return f"bad value for '{full_key}': {first_line}"
    if isinstance(ex, InterpolationResolutionError):  # `${python:...}`, `seed=${seed}`, `${oc.env:UNSET}`
        reason = re.sub(r"^\w+ raised while resolving interpolation: ", "", first_line).strip('"')
        return f"cannot resolve the interpolation in '{full_key}': {reason}"
    return None


def _missing_choice_message(text: str) -> Optional[str]:
    found = re.search(r"Could not find '([^']+)/([^']+)'", text)
    options = re.findall(r"^\t(\S+)$", text, flags=re.M)
    if not found:
        first = text.splitlines()[0] if text else "config not found"
        return first
    group, choice = found.groups()
    return f"unknown {group} '{choice}'{closest(choice, options)}; valid choices: {', '.join(options)}"


def _message_from_text(text: str) -> str:
    """Hydra sometimes folds the OmegaConf error into its own text (e.g. a typo inside a YAML file)."""
    where = re.match(r"In '([^']+)'", text)
    prefix = f"in config file '{where.group(1)}': " if where else ""
    unknown = re.search(r"Key '([^']+)' not in '(\w+)'\s+full_key: (\S+)", text)
    if unknown:
        return prefix + unknown_key_message(unknown.group(3), _field_names(schema_named(unknown.group(2))))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = next((line for line in lines[1:] if not line.startswith(("full_key", "reference_type", "object_type"))), "")
    return f"{lines[0]} {detail}".strip() if lines else "invalid config"


def _user_recipe_message(text: str) -> Optional[str]:
    """A recipe in a `-cd` folder merges at the top level only with a package header; without one Hydra puts it
    under `recipe.` and fails on its first key."""
    where = re.match(r"In '(recipe/[^']+)'", text)
    if where and ("@recipe." in text or "'recipe'" in text):
        return f"in config file '{where.group(1)}': a recipe merges at the top level of the config; make `# @package _global_` its first line"
    return None


def describe(ex: BaseException) -> Optional[str]:
    """One line for a user mistake, or None if `ex` is a bug that deserves its traceback."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(ex, (UserError, ConfigError)):
        return str(ex)
    if isinstance(ex, MissingConfigException):
        return _missing_choice_message(str(ex))
    if isinstance(ex, OverrideParseException):
        return f"cannot parse override: {str(ex).splitlines()[0]}"
    if isinstance(ex, OmegaConfBaseException):
        return _omegaconf_message(ex)
    if isinstance(ex, ConfigCompositionException):
        recipe = _user_recipe_message(str(ex))
        if recipe:
            return recipe
        cause = ex.__cause__
        if isinstance(cause, OmegaConfBaseException):
            return _omegaconf_message(cause) or str(ex).splitlines()[0]
        if isinstance(cause, MissingConfigException):
            return _missing_choice_message(str(cause))
        return _message_from_text(str(ex))
    return None
