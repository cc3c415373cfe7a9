"""The learning rate a user reads in metrics.jsonl follows transformers' schedules step for step (warmup step/warmup,
then the decay), so a run and a Trainer run with the same warmup are comparable; `--help` says how warmup works."""

from __future__ import annotations

import json

import pytest

from conftest import FAST, cli, only_run_dir


@pytest.mark.parametrize(
    "scheduler, make", [("linear", "get_linear_schedule_with_warmup"), ("cosine", "get_cosine_schedule_with_warmup")]
)
def test_logged_rates_equal_transformers_schedule(tmp_path, scheduler, make):
    import torch
    import transformers

    steps, warmup, lr = 8, 3, 1e-3
    cli(
        [
            "train",
            *[a for a in FAST if not a.startswith("trainer.max_steps")],
            f"trainer.max_steps={steps}",
            "trainer.log_every=1",
            "trainer.eval_every=0",
            "trainer.batch_size=4",
            f"scheduler={scheduler}",
            f"scheduler.warmup_steps={warmup}",
            f"optimizer.lr={lr}",
        ],
        cwd=tmp_path,
    )
    lines = (only_run_dir(tmp_path / "outputs") / "metrics.jsonl").read_text().splitlines()
    logged = [r["train/lr"] for r in map(json.loads, lines) if "train/lr" in r]
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedule = getattr(transformers, make)(optimizer, num_warmup_steps=warmup, num_training_steps=steps)
    expected = []
    for _ in range(steps):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert logged == pytest.approx(expected, abs=1e-12), (logged, expected)


def test_help_says_how_warmup_runs(tmp_path):
    for args in (["--help"], ["train", "--help"]):
        out = cli(args, cwd=tmp_path).stdout
        assert "step/warmup" in out and "warmup_ratio" in out, out[-800:]
