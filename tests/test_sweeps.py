"""Sweeps on Hydra's plugins: a 3-trial Optuna search and a 2-job joblib launch, each ranked at the end."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from conftest import FAST, cli, run_cli

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
pytest.importorskip("hydra_plugins.hydra_joblib_launcher")


def _sweep_dir(root: Path) -> Path:
    return next(root.glob("outputs/train-multirun/*/*"))


def _ranked(sweep: Path) -> list[dict]:
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    values = [float(r["value"]) for r in rows]
    assert values == sorted(values, reverse=True)  # accuracy: higher is better
    return rows


def test_optuna_sweep_ranks_its_trials(tmp_path):
    proc = cli(["train", "-m", "hydra/sweeper=llmft-optuna", "hydra.sweeper.n_trials=3", *FAST], cwd=tmp_path)
    sweep = _sweep_dir(tmp_path)
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2"]
    rows = _ranked(sweep)
    assert len(rows) == 3 and all(r["overrides"].startswith("optimizer.lr=") for r in rows)  # only the swept key shown
    assert "Best value" in proc.stdout + proc.stderr
    assert (sweep / "summary.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # ~11 s; the default suite stays under 10 minutes on 2 cores (CI runs it in the slow one)
def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path):
    run_cli(["train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optimizer.lr=1e-4,1e-3", *FAST], cwd=tmp_path)
    sweep = _sweep_dir(tmp_path)
    for job in ("0", "1"):
        assert (sweep / job / "eval.json").is_file()
    assert {r["overrides"] for r in _ranked(sweep)} == {"optimizer.lr=0.0001", "optimizer.lr=0.001"}
    again = cli(["sweep-report", str(sweep)], cwd=tmp_path)
    assert "optimizer.lr=0.001" in again.stdout


def test_slurm_launcher_config_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir

    from llmft.cli import register_recipes
    from llmft.cli import register_configs
    from llmft.paths import conf_dir

    register_configs()
    register_recipes()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=llmft-slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher.tasks_per_node == 8 and "submitit" in cfg.hydra.launcher._target_
