"""run.json: what a run was (resolved config, code version, package versions, seed, data fingerprint)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("llmft", "torch", "transformers", "datasets", "hydra-core", "omegaconf", "scikit-learn", "tokenizers")


def git_sha() -> str | None:
    """The commit of the llmft checkout, when it runs from one."""
    repo = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_manifest(
    path: Path, config: dict[str, Any], seed: int, data_fingerprint: dict[str, str], extra: dict[str, Any]
) -> None:
    manifest = {
        "created": datetime.now(timezone.utc).isoformat(),
        "command": sys.argv,
        "config": config,
        "seed": seed,
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "data_fingerprint": data_fingerprint,
        **extra,
    }
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
