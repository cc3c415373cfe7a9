"""`llmft train|eval|generate` end to end through the real CLI on a tiny model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import FAST, only_run_dir, cli, write_jsonl

SENTENCES = [
    "An absolute delight from start to finish, I loved it.",
    "The battery died within a day and support never answered.",
    "Not bad at all, I would happily buy it again.",
    "The waiter was rude and the soup was cold.",
]


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_run_folder_has_everything(tiny_run):
    for name in (
        ".hydra/config.yaml",
        "run.json",
        "metrics.jsonl",
        "eval.json",
        "loss.png",
        "checkpoints/best/config.json",
        "checkpoints/best/model.safetensors",
        "checkpoints/best/tokenizer.json",
        "checkpoints/last/model.safetensors",
    ):
        assert (tiny_run / name).is_file(), name
    manifest = json.loads((tiny_run / "run.json").read_text())
    assert manifest["seed"] == 42
    assert manifest["config"]["model"]["name_or_path"] == "builtin:tiny-bert"
    assert set(manifest["data_fingerprint"]) == {"train", "eval", "test"}
    assert "torch" in manifest["packages"] and "transformers" in manifest["packages"]
    assert (tiny_run / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_loss_falls_and_the_model_learns(tiny_run):
    records = _records(tiny_run)
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert len(losses) >= 8
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05
    evals = [r["eval/accuracy"] for r in records if "eval/accuracy" in r]
    assert len(evals) >= 4  # every 16 steps and at each epoch end
    result = json.loads((tiny_run / "eval.json").read_text())
    assert result["select_metric"] == "accuracy" and result["select_value"] == max(evals)
    assert result["metrics"]["accuracy"] > 0.6  # chance is 0.5
    assert result["metrics"]["samples"] == 128


def test_pipeline_on_best_checkpoint_matches_generate(tiny_run, tmp_path):
    from transformers import pipeline

    inputs = write_jsonl(tmp_path / "in.jsonl", [{"text": s} for s in SENTENCES])
    cli(["generate", f"run={tiny_run}", f"input={inputs}", f"output={tmp_path / 'out.jsonl'}"], cwd=tmp_path)
    ours = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    theirs = pipeline("text-classification", model=str(tiny_run / "checkpoints" / "best"), device="cpu")(SENTENCES)
    assert [o["label"] for o in ours] == [t["label"] for t in theirs]
    assert {o["label"] for o in ours} <= {"negative", "positive"}
    for o, t in zip(ours, theirs):
        assert o["score"] == pytest.approx(t["score"], abs=1e-5)
        assert sum(o["probabilities"].values()) == pytest.approx(1.0)
        assert o["text"] in SENTENCES


def test_generate_prompt_prints_one_json_line(tiny_run, tmp_path):
    proc = cli(["generate", f"run={tiny_run}", "prompt=What a wonderful little film."], cwd=tmp_path)
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    assert row["label"] in ("negative", "positive")
    assert set(row["probabilities"]) == {"negative", "positive"}


def test_eval_reproduces_the_run_and_scores_other_data(tiny_run, tmp_path):
    proc = cli(["eval", f"run={tiny_run}"], cwd=tmp_path)
    again = json.loads(next(tmp_path.glob("outputs/eval/**/eval.json")).read_text())["metrics"]
    original = json.loads((tiny_run / "eval.json").read_text())["metrics"]
    assert again["accuracy"] == pytest.approx(original["accuracy"])
    assert again["loss"] == pytest.approx(original["loss"], rel=1e-5)
    assert "accuracy" in proc.stdout

    other = tmp_path / "other.csv"
    with open(other, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "label"])
        for i, s in enumerate(SENTENCES * 3):
            writer.writerow([s, "positive" if i % 2 == 0 else "negative"])
    out = tmp_path / "other-eval"
    cli(
        ["eval", f"run={tiny_run}", f"task.data.path={other}", "task.data.text_columns=[review]", f"hydra.run.dir={out}"],
        cwd=tmp_path,
    )
    scored = json.loads((out / "eval.json").read_text())
    assert scored["metrics"]["samples"] == 12 and scored["data"] == str(other)


def test_eval_errors_are_one_line(tiny_run, tmp_path):
    proc = cli(["eval", f"run={tmp_path / 'nope'}"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "run folder not found" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli(["eval", f"run={tiny_run}", "split=dev"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "unknown split 'dev'" in proc.stderr


def test_bf16_autocast_runs_on_cpu(tmp_path):
    proc = cli(["train", *FAST, "precision=bf16"], cwd=tmp_path)
    assert "slow" in proc.stderr  # the one warning about bf16 on this CPU
    run = only_run_dir(tmp_path / "outputs")
    assert json.loads((run / "run.json").read_text())["plan"]["precision"] == "bf16"


def test_sweep_writes_each_job_and_a_ranked_summary(tmp_path):
    cli(["train", "-m", *FAST, "trainer.max_steps=4", "optimizer.lr=1e-4,3e-3"], cwd=tmp_path)
    sweep = next(tmp_path.glob("outputs/train-multirun/*/*"))
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    for job in ("0", "1"):
        assert (sweep / job / "eval.json").is_file()
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert [r["rank"] for r in rows] == ["1", "2"]
    assert {float(r["overrides"].split("optimizer.lr=")[1].split()[0]) for r in rows} == {1e-4, 3e-3}
    values = [float(r["value"]) for r in rows]
    assert values == sorted(values, reverse=True)
    assert "| rank |" in (sweep / "summary.md").read_text()


TINY_BY_FAMILY = {
    "classification": "tiny-bert",
    "token_classification": "tiny-bert",
    "regression": "tiny-bert",
    "multiple_choice": "tiny-bert",
    "extractive_qa": "tiny-bert",
    "embedding": "tiny-bert",
    "reward": "tiny-gpt2",
    "causal_lm": "tiny-gpt2",
    "preference": "tiny-gpt2",
    "kto": "tiny-gpt2",
    "seq2seq": "tiny-t5",
}


def test_every_family_has_a_tiny_model_for_the_shrunk_recipe_runs():
    """The slow recipe runs swap in a tiny model by family; a new family without one ran a recipe on the wrong
    architecture (CI failed on recipe=dpo-smollm2 with tiny-bert)."""
    from llmft.tasks import FAMILIES

    assert set(FAMILIES) == set(TINY_BY_FAMILY)


def _recipe_family(recipe: str) -> str:
    from hydra import compose, initialize_config_dir

    from llmft.cli import register_recipes
    from llmft.cli import register_configs
    from llmft.paths import conf_dir

    register_configs()
    register_recipes()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose("train", overrides=[f"recipe={recipe}"]).task.family


@pytest.mark.slow  # ~80 s for all; every recipe also composes and validates in the default suite (test_compose)
@pytest.mark.parametrize("recipe", sorted(p.stem for p in (Path(__file__).parents[1] / "recipes").glob("*.yaml")))
def test_every_recipe_runs_shrunk(recipe, tmp_path):
    family = _recipe_family(recipe)
    tiny = TINY_BY_FAMILY[family]
    generative = ["task.eval_generate_samples=4"] if family in ("causal_lm", "seq2seq") else []
    student = [f"finetune.teacher={tiny}", "model.num_layers=1"] if recipe.startswith("distill-") else []
    shrink = [
        *student,
        f"model={tiny}",
        "model.max_length=96",
        "task.data.max_train_samples=64",
        "task.data.max_eval_samples=16",
        *generative,
        "task.generation.max_new_tokens=4",
        "trainer.epochs=1",
        "trainer.max_steps=3",
        "trainer.batch_size=8",
        "trainer.eval_every=0",
        "trainer.progress=false",
        "finetune.lora_target_modules=null",
    ]
    cli(["train", f"recipe={recipe}", *shrink], cwd=tmp_path)
    run = only_run_dir(tmp_path / "outputs")
    config = json.loads((run / "run.json").read_text())["config"]
    assert config["model"]["name_or_path"] == f"builtin:{tiny}"  # the command line wins over the recipe
    assert config["trainer"]["max_steps"] == 3
    assert (run / "checkpoints" / "best" / "config.json").is_file()


def test_recipe_values_apply(tmp_path):
    from hydra import compose, initialize_config_dir

    from llmft.cli import register_recipes
    from llmft.cli import register_configs
    from llmft.paths import conf_dir

    register_configs()
    register_recipes()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["recipe=sentiment-minilm", "trainer.epochs=5"])
    assert cfg.scheduler.name.value == "cosine" and cfg.optimizer.lr == 6e-5
    assert cfg.trainer.epochs == 5 and cfg.trainer.eval_every == 50
