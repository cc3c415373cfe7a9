"""The in-process `cli()` test helper answers as `python -m llmft` does and leaves the pytest process as it found it."""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings

import pytest

from conftest import FAST, cli, run_cli


def _process_state() -> dict:
    return {
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "argv": list(sys.argv),
        "warnings": list(warnings.filters),
        "root": (logging.getLogger().level, list(logging.getLogger().handlers)),
        "signals": [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)],
    }


def test_in_process_cli_leaves_the_process_as_it_found_it(tmp_path):
    before = _process_state()
    assert cli(["train", *FAST, "model.max_length=512"], cwd=tmp_path, check=False).returncode == 2  # after Hydra set up logging
    assert cli(["train", "optimizer.lrr=1"], cwd=tmp_path, check=False, env={"HYDRA_FULL_ERROR": "1"}).returncode == 1
    assert cli(["train", "--help"], cwd=tmp_path).returncode == 0
    assert _process_state() == before


@pytest.mark.parametrize(
    "args, env",
    [
        (["train", "optimizer.lrr=1", "model=tiny-bert"], None),
        (["trian"], None),
        (["train", "optimizer.lrr=1"], {"HYDRA_FULL_ERROR": "1"}),
    ],
)
def test_in_process_cli_answers_as_the_process_does(tmp_path, args, env):
    ours, real = cli(args, cwd=tmp_path, check=False, env=env), run_cli(args, cwd=tmp_path, check=False, env=env)
    assert ours.returncode == real.returncode != 0
    assert ours.stdout == real.stdout
    if env:  # a traceback: same exception, frames above main() differ
        assert ours.stderr.splitlines()[-1] == real.stderr.splitlines()[-1] and "Traceback" in ours.stderr
    else:
        assert ours.stderr == real.stderr
