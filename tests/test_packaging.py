"""The wheel carries the configs, recipes and bundled data, and runs from them alone."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_carries_configs_recipes_and_data(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    wheel = next(tmp_path.glob("llmft-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for group in ("model", "task", "optimizer", "scheduler", "precision"):
        for path in (ROOT / "conf" / group).glob("*.yaml"):
            assert f"llmft/conf/{group}/{path.name}" in names
    for path in (ROOT / "conf" / "hydra").rglob("*.yaml"):  # job logging (train.log), launchers, sweepers
        assert f"llmft/conf/{path.relative_to(ROOT / 'conf').as_posix()}" in names
    for verb in ("train", "eval", "generate"):
        assert f"llmft/conf/{verb}.yaml" in names
    for path in (ROOT / "recipes").glob("*.yaml"):
        assert f"llmft/recipes/{path.name}" in names
    for split in ("train", "validation", "test"):
        assert f"llmft/resources/sentiment/{split}.jsonl" in names

    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    out = subprocess.run(
        [sys.executable, "-m", "llmft", "train", "--help"], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert "optimizer: adam, adamw, adamw8bit, sgd" in out.stdout
    where = subprocess.run(
        [sys.executable, "-c", "from llmft.paths import conf_dir, recipes_dir; print(conf_dir()); print(recipes_dir())"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(p.startswith(str(unpacked)) for p in where)
