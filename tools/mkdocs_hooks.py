"""mkdocs hooks (mkdocs.yml `hooks:`): pages made at build time from their sources, so they cannot drift.

- `config-reference.md`: generated from the schemas by tools/gen_config_reference.py;
- `benchmarks.md`: bench/BENCHMARKS.md as it is (mkdocs reads only docs/, and the benchmarks live beside their code).
"""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]

BENCHMARKS_NOTE = (
    "!!! note\n    This page is `bench/BENCHMARKS.md`, copied at every docs build. Each table names the "
    "command that reproduces it.\n\n"
)


def generated_pages() -> dict[str, str]:
    """docs path -> the markdown the build adds."""
    sys.path.insert(0, str(ROOT / "tools"))  # tools/ is not a package
    import gen_config_reference

    benchmarks = (ROOT / "bench" / "BENCHMARKS.md").read_text()
    title, _, rest = benchmarks.partition("\n")
    return {"config-reference.md": gen_config_reference.reference(), "benchmarks.md": f"{title}\n\n{BENCHMARKS_NOTE}{rest}"}


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for path, content in generated_pages().items():
        files.append(File.generated(config, path, content=content))
    return files
