"""Config mistakes fail at compose time with one line naming the key and the closest valid one."""

from __future__ import annotations

import pytest

from conftest import cli


@pytest.mark.parametrize(
    "override, expected",
    [
        ("optimizer.lrr=1", ["unknown config key 'optimizer.lrr'", "did you mean 'lr'"]),
        ("trainer.epocs=3", ["unknown config key 'trainer.epocs'", "did you mean 'epochs'"]),
        ("+optimizer.foo=1", ["unknown config key 'optimizer.foo'"]),
        ("precision=bf17", ["unknown precision 'bf17'", "did you mean 'bf16'", "auto, bf16, fp16, fp32"]),
        ("optimizer=adamww", ["unknown optimizer 'adamww'", "did you mean 'adamw'"]),
        ("optimizer.lr=abc", ["bad value for 'optimizer.lr'", "could not be converted to Float"]),
        ("optimizer.name=adamx", ["bad value for 'optimizer.name'", "expected one of [sgd, adam, adamw, adamw8bit]"]),
        ("trainer.epochs=0", ["trainer.epochs must be >= 1"]),
        ("precision=fp16", ["precision=fp16 needs a CUDA GPU"]),
        ("recipe=nope", ["unknown recipe 'nope'"]),
    ],
)
def test_bad_config_exits_with_one_clear_line(tmp_path, override, expected):
    proc = cli(["train", override, "model=tiny-bert"], cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    first = proc.stderr.strip().splitlines()[0]
    assert first.startswith("error: ")
    for text in expected:
        assert text in first
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").glob("**/run.json"))


def test_typo_inside_a_user_yaml_names_the_key(tmp_path):
    conf = tmp_path / "myconf" / "optimizer"
    conf.mkdir(parents=True)
    (conf / "mine.yaml").write_text("name: adamw\nlr: 1e-4\nweight_decy: 0.1\n")
    proc = cli(["train", "-cd", str(tmp_path / "myconf"), "optimizer=mine"], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "weight_decy" in proc.stderr and "did you mean 'weight_decay'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_full_error_env_shows_the_traceback(tmp_path):
    proc = cli(["train", "optimizer.lrr=1"], cwd=tmp_path, check=False, env={"HYDRA_FULL_ERROR": "1"})
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


def test_unknown_verb_suggests(tmp_path):
    proc = cli(["trian"], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "did you mean 'train'" in proc.stderr


def test_help_lists_verbs_groups_and_options(tmp_path):
    out = cli(["--help"], cwd=tmp_path).stdout
    for text in ("train", "eval", "generate", "optimizer", "adamw", "sgd", "cosine", "bf16", "minilm-l6", "sentiment", "recipe"):
        assert text in out
    verb_help = cli(["train", "--help"], cwd=tmp_path).stdout
    for text in (
        "optimizer: adam, adamw, adamw8bit, sgd",
        "scheduler: constant, cosine, exponential, linear",
        "recipe:",
        "lr: 5.0e-05",
    ):
        assert text in verb_help
    assert "family: causal_lm" in cli(["train", "task=sft", "--help"], cwd=tmp_path).stdout  # the composed config


def test_hub_metric_needs_evaluate_or_the_network(tmp_path):
    proc = cli(["train", "model=tiny-bert", "task.hub_metrics=[accuracy]"], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "needs the evaluate package" in proc.stderr or "could not load hub metric 'accuracy'" in proc.stderr
