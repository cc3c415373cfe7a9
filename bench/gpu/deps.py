"""Install, from carried wheels and without network, what this Python lacks to run llmft: each wheel whose package is
missing, and each whose package is installed at a version a needed wheel's requirements exclude (datasets pins pyarrow
and fsspec). Everything goes into one target folder for PYTHONPATH; the machine's own packages are left alone.

    python bench/gpu/deps.py bench/gpu/wheels /tmp/site     # prints what it installed and any requirement still unmet
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version


def installed(name: str) -> Version | None:
    try:
        return Version(metadata.version(name))
    except metadata.PackageNotFoundError:
        return None


def requirements(wheel: Path) -> list[Requirement]:
    """The wheel's unconditional requirements (extras and markers for other platforms left out)."""
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(meta).decode().splitlines()
    reqs = [Requirement(line.split(":", 1)[1].strip()) for line in lines if line.startswith("Requires-Dist:")]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


def plan(wheels: list[Path]) -> tuple[list[Path], list[str]]:
    """(wheels to install, requirements no carried wheel can meet)."""
    carried = {canonicalize_name(parse_wheel_filename(w.name)[0]): w for w in wheels}
    versions = {name: parse_wheel_filename(w.name)[1] for name, w in carried.items()}
    needed = {name for name in carried if installed(name) is None}
    unmet: list[str] = []
    queue = list(needed)
    while queue:
        for req in requirements(carried[queue.pop()]):
            name = canonicalize_name(req.name)
            have = versions[name] if name in needed else installed(name)
            if have is not None and req.specifier.contains(have, prereleases=True):
                continue
            if name in carried and name not in needed and req.specifier.contains(versions[name], prereleases=True):
                needed.add(name)
                queue.append(name)
            elif f"{req} (have {have})" not in unmet:
                unmet.append(f"{req} (have {have or 'none'})")
    return [carried[n] for n in sorted(needed)], unmet


def main() -> None:
    folder, target = Path(sys.argv[1]), Path(sys.argv[2])
    wheels = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    if not wheels:
        print(f"no carried wheels in {folder} (bench/gpu/fetch_wheels.sh makes them; name the folder in the run's carry)")
    chosen, unmet = plan(wheels)
    if chosen:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-index",
                "--no-deps",
                "--no-compile",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "--upgrade",
                "--target",
                str(target),
                *map(str, chosen),
            ],
            check=True,
        )
    print("installed from carried wheels: " + (", ".join(w.name for w in chosen) or "nothing (all present)"))
    for line in unmet:
        print(f"WARNING: unmet requirement, no carried wheel fits: {line}")


if __name__ == "__main__":
    main()
