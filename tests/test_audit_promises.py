"""Documented promises (docs/*.md) no other test held to: each test here fails if the sentence it names stops being true.

Cheap on purpose: configs are composed in-process, finished runs are reused (`tiny_run`, one short generative run),
and the CLI is called only where the user meets the promise there."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli, only_run_dir, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()  # the config groups, `trainer.*`
LAYOUT = (ROOT / "docs" / "layout.md").read_text()  # the code layout


def _compose(overrides: list[str], verb: str = "train"):
    from hydra import compose, initialize_config_dir

    from llmft.cli import _register_all
    from llmft.paths import conf_dir

    _register_all()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(verb, overrides=overrides)


# --- docs/configuration.md "## Config groups": the table, the defaults, trust_remote_code, task.family -------------------------------------


def _readme_table() -> dict[str, list[str]]:
    """group -> the options the config-group table names (`a(-b)` stands for `a` and `a-b`)."""
    table = {}
    for group, options in re.findall(r"^\| `(\w+)` \| (.+?) \|", CONFIGURATION, flags=re.M):
        names = []
        for name in re.findall(r"`([^`]+)`", options):
            names += [re.sub(r"\(.*\)", "", name), name.replace("(", "").replace(")", "")] if "(" in name else [name]
        table[group] = sorted(set(names))
    return table


def test_every_option_the_readme_table_names_exists_and_the_defaults_are_the_named_ones():
    from llmft.cli import group_options

    table, shipped = _readme_table(), group_options()
    assert set(table) == {"model", "task", "finetune", "optimizer", "scheduler", "precision", "logger", "recipe"}
    for group, names in table.items():
        if group != "recipe":  # its row names a folder, not options
            missing = [n for n in names if "/" not in n and n not in shipped[group]]
            assert not missing, f"the docs name {group} options that do not exist: {missing}"
    cfg = _compose([])
    assert cfg.model.name_or_path == "builtin:minilm-l6"  # model: minilm-l6 (default, offline)
    defaults = {
        "finetune": cfg.finetune.method,
        "optimizer": cfg.optimizer.name,
        "scheduler": cfg.scheduler.name,
        "precision": cfg.precision.mode,
        "logger": cfg.logger.kind,
    }
    assert {k: getattr(v, "value", v) for k, v in defaults.items()} == {
        "finetune": "full",
        "optimizer": "adamw",
        "scheduler": "linear",
        "precision": "auto",
        "logger": "none",
    }


def test_task_family_picks_one_head_per_named_family():
    from llmft.tasks import FAMILIES, get_task

    named = re.search(r"`task\.family` picks the head: (.+?) \|", CONFIGURATION).group(1)
    families = re.findall(r"`(\w+)`", named)
    assert sorted(families) == sorted(FAMILIES)
    import transformers

    heads = {f: get_task(FAMILIES[f].options(family=f)).auto_class_name for f in families}
    assert all(hasattr(transformers, head) for head in heads.values()), heads  # a real Auto class per family
    # regression and reward share the sequence-classification head, preference and kto the causal-LM one
    assert len(set(heads.values())) >= len(FAMILIES) - 4


def test_trust_remote_code_stays_off_in_every_model_option():
    from llmft.cli import group_options
    from llmft.commands.common import to_typed
    from llmft.config import TrainConfig

    for option in group_options()["model"]:
        assert to_typed(_compose([f"model={option}"]), TrainConfig).model.trust_remote_code is False, option


def test_every_trainer_field_the_readme_lists_exists():
    from dataclasses import fields

    from llmft.config import TrainerConfig

    paragraph = CONFIGURATION.split("`trainer.*` (no group) holds the loop:", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"`(\w+)`", paragraph))
    known = {f.name for f in fields(TrainerConfig)}
    assert len(named) >= 20 and named <= known, named - known


def test_auto_precision_is_fp32_on_cpu_bf16_on_a_gpu_that_has_it_else_fp16(monkeypatch):
    import torch

    from llmft.config import PrecisionMode
    from llmft.engine.precision import resolve_precision

    assert resolve_precision(PrecisionMode.auto, torch.device("cpu")).mode is PrecisionMode.fp32
    for supported, expected in ((True, PrecisionMode.bf16), (False, PrecisionMode.fp16)):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda supported=supported: supported)
        assert resolve_precision(PrecisionMode.auto, torch.device("cuda")).mode is expected


# --- docs/configuration.md "## Your own configs": -cd mydir ---------------------------------------------------------------------------------


def test_user_config_folder_adds_models_and_recipes_checked_against_the_schema(tmp_path):
    mydir = tmp_path / "mydir"
    (mydir / "model").mkdir(parents=True)
    (mydir / "recipe").mkdir()
    (mydir / "model" / "my-model.yaml").write_text("name_or_path: builtin:tiny-bert\nmax_length: 48\n")
    (mydir / "recipe" / "my-exp.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /optimizer: sgd\noptimizer:\n  lr: 0.003\ntrainer:\n  epochs: 4\n"
    )
    (mydir / "recipe" / "no-header.yaml").write_text("optimizer:\n  lr: 0.003\n")
    (mydir / "recipe" / "no-header-defaults.yaml").write_text("defaults:\n  - override /optimizer: sgd\n")
    (mydir / "recipe" / "typo.yaml").write_text("# @package _global_\ntrainer:\n  epocs: 4\n")
    job = cli(["train", "-cd", str(mydir), "model=my-model", "recipe=my-exp", "--cfg", "job"], cwd=tmp_path).stdout
    assert "name_or_path: builtin:tiny-bert" in job and "max_length: 48" in job
    assert re.search(r"optimizer:\n  name: sgd\n  lr: 0\.003", job) and "epochs: 4" in job
    header = "make `# @package _global_` its first line"
    for recipe, message in (("no-header", header), ("no-header-defaults", header), ("typo", "did you mean 'epochs'")):
        proc = cli(["train", "-cd", str(mydir), f"recipe={recipe}", "--cfg", "job"], cwd=tmp_path, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert message in proc.stderr.splitlines()[0], proc.stderr


# --- docs/data.md -----------------------------------------------------------------------------------------------


class _Tok:
    """Stands in for a tokenizer: two ids per text (the label logic is what is under test)."""

    truncation_side = "right"

    def __call__(self, texts, *pairs, **kw):
        return {"input_ids": [[1, 2] for _ in texts]}


def _labels(rows: list[dict], label_names=None):
    from datasets import Dataset

    from llmft.config import DataConfig
    from llmft.tasks.options import ClassificationOptions as TaskConfig
    from llmft.tasks.classification import ClassificationTask

    task = ClassificationTask(TaskConfig(data=DataConfig(label_names=label_names)), tokenizer=_Tok(), max_length=8)
    out = task.prepare({"train": Dataset.from_list(rows)})
    return task.label_names, out["train"]["labels"]


def test_label_names_fix_the_label_order_else_read_from_the_data():
    rows = [{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"}, {"text": "c", "label": "pos"}]
    assert _labels(rows) == (["neg", "pos"], [1, 0, 1])  # read from the data
    assert _labels(rows, ["pos", "neg"]) == (["pos", "neg"], [0, 1, 0])  # the order the user fixed
    integers = [{"text": "a", "label": 2}, {"text": "b", "label": 0}, {"text": "c", "label": 1}]
    assert _labels(integers) == (["0", "1", "2"], [2, 0, 1])  # integer labels are their own ids


def test_tsv_and_json_files_load(tmp_path):
    from llmft.config import DataConfig
    from llmft.data.loading import load_raw

    rows = [{"text": f"good, and also fine {i}", "label": "pos" if i % 2 else "neg"} for i in range(20)]
    tsv = tmp_path / "data.tsv"
    tsv.write_text("text\tlabel\n" + "".join(f"{r['text']}\t{r['label']}\n" for r in rows))
    array = tmp_path / "data.json"
    array.write_text(json.dumps(rows))
    for path in (tsv, array):
        train = load_raw(DataConfig(path=str(path)))["train"]
        assert train.column_names == ["text", "label"] and train["text"] == [r["text"] for r in rows], path


def test_carved_splits_follow_split_seed(tmp_path):
    from llmft.config import DataConfig
    from llmft.data.loading import load_raw, named_splits

    path = write_jsonl(tmp_path / "d.jsonl", [{"text": f"row {i}", "label": i % 2} for i in range(100)])
    tests = [
        named_splits(load_raw(DataConfig(path=str(path), split_seed=s)), DataConfig(split_seed=s))["test"]["text"]
        for s in (1, 1, 2)
    ]
    assert tests[0] == tests[1] and tests[0] != tests[2]


def test_hub_sources_without_the_network_fail_in_one_line():
    from llmft.models.backbone import load_tokenizer
    from llmft.config import DataConfig, ModelConfig
    from llmft.data.loading import load_raw
    from llmft.errors import UserError

    with pytest.raises(UserError) as data_error:
        load_raw(DataConfig(path="glue", name="sst2"))
    with pytest.raises(UserError) as model_error:
        load_tokenizer("google-bert/bert-base-uncased", ModelConfig(name_or_path="google-bert/bert-base-uncased"))
    for error, name in ((data_error, "glue"), (model_error, "google-bert/bert-base-uncased")):
        assert name in str(error.value) and "\n" not in str(error.value)


def test_bundled_data_has_the_readme_counts_and_its_generators_remake_it(tmp_path):
    from llmft.paths import resources_dir

    sys.path.insert(0, str(ROOT / "tools"))  # the data generators live outside the wheel
    import make_attacks
    import make_embedding
    import make_generative
    import make_mc
    import make_ner
    import make_preference
    import make_sentiment
    import make_sts

    counts = {
        s: len((resources_dir() / "sentiment" / f"{s}.jsonl").read_text().splitlines()) for s in ("train", "validation", "test")
    }
    assert counts == {"train": 3000, "validation": 500, "test": 1000}
    make_sentiment.main(["--out", str(tmp_path / "sentiment")])
    make_generative.main(["--out", str(tmp_path)])
    make_ner.main(["--out", str(tmp_path / "ner")])
    make_sts.main(["--out", str(tmp_path / "sts")])
    make_mc.main(["--out", str(tmp_path / "multiple-choice")])
    make_embedding.main(["--out", str(tmp_path / "embedding")])
    make_preference.main(["--out", str(tmp_path)])  # preference/ and kto/
    make_attacks.main(["--out", str(tmp_path / "attacks")])
    shipped = sorted(p.relative_to(resources_dir()) for p in resources_dir().glob("*/*.jsonl"))
    assert len(shipped) >= 30  # every shipped file below is remade byte for byte by its generator
    for name in shipped:
        assert (tmp_path / name).read_bytes() == (resources_dir() / name).read_bytes(), name


def test_the_layout_page_names_every_module_and_only_modules_that_exist():
    layout = LAYOUT
    named = set(re.findall(r"\b(\w+\.py)\b", layout))
    folders = set(re.findall(r"\b(\w+)/(?=[\s`])", layout))
    missing = [n for n in named if not list((ROOT / "llmft").rglob(n))] + [
        f for f in folders if not ((ROOT / "llmft" / f).is_dir() or (ROOT / f).is_dir())
    ]
    assert not missing, missing
    modules = {p.name for p in (ROOT / "llmft").rglob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    assert modules - named == set(), "modules docs/layout.md does not name"
    layers = {p.parent.name for p in (ROOT / "llmft").rglob("__init__.py") if p.parent != ROOT / "llmft"}
    assert layers <= folders


# --- A finished run: eval -m, the manifest, the model card, loss.png ---------------------------------------------------


def test_eval_and_generate_take_m_and_validation_scores_the_validation_split(tiny_run, tmp_path):
    cli(["eval", "-m", f"run={tiny_run}", "split=validation,test"], cwd=tmp_path)
    jobs = sorted(tmp_path.glob("outputs/eval-multirun/*/*/*/eval.json"))
    results = {r["split"]: r["metrics"] for r in map(json.loads, (p.read_text() for p in jobs))}
    trained = json.loads((tiny_run / "eval.json").read_text())
    assert set(results) == {"validation", "test"}
    assert results["validation"]["accuracy"] == pytest.approx(trained["select_value"])  # the best eval, on validation
    assert results["test"]["accuracy"] == pytest.approx(trained["metrics"]["accuracy"])
    out = cli(["generate", "-m", f"run={tiny_run}", "prompt=lovely,awful"], cwd=tmp_path).stdout  # generate takes -m too
    assert sorted(json.loads(line)["text"] for line in out.splitlines() if line.startswith("{")) == ["awful", "lovely"]


def test_manifest_and_model_card_record_code_packages_and_batch(tiny_run):
    import torch

    manifest = json.loads((tiny_run / "run.json").read_text())
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert manifest["git_sha"] == head.stdout.strip()
    assert manifest["plan"]["effective_batch_size"] == 16  # batch_size 16 x 1 accumulation step x 1 process
    card = (tiny_run / "checkpoints" / "best" / "README.md").read_text()
    assert f'"torch": "{torch.__version__}"' in card  # package versions
    assert manifest["config"]["task"]["data"]["path"] in card


def test_loss_png_plots_train_and_eval_loss_and_the_selection_metric(tiny_run, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from llmft.reporting.console import plot_curves

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    records = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    plot_curves(records, "accuracy", tmp_path / "loss.png")
    lines = {line.get_label(): line for ax in figures[0].axes for line in ax.get_lines()}
    assert set(lines) == {"train/loss", "eval/loss", "eval/accuracy"}
    assert list(lines["eval/accuracy"].get_xdata()) == [r["step"] for r in records if "eval/accuracy" in r]
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_sweep_summary_ranks_by_the_metric_direction_failed_jobs_last(tmp_path):
    from llmft.commands.sweep import write_summary

    for job, lr, value in (("0", "0.1", 0.9), ("1", "0.2", 0.3), ("2", "0.3", None), ("3", "0.4", 0.5)):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / ".hydra" / "overrides.yaml").write_text(f"- task=textgen\n- optimizer.lr={lr}\n")
        if value is not None:
            (tmp_path / job / "eval.json").write_text(
                json.dumps({"select_metric": "loss", "select_mode": "min", "select_value": value})
            )
    write_summary(tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert [(r["rank"], r["job"], r["status"]) for r in rows] == [
        ("1", "1", "ok"),
        ("2", "3", "ok"),
        ("3", "0", "ok"),
        ("4", "2", "failed"),
    ]
    assert rows[0]["overrides"] == "optimizer.lr=0.2"  # only what was swept
    assert "ranked by loss (min)" in (tmp_path / "summary.md").read_text()


# --- Training options: a local backbone folder, LoRA's printed counts, batch limits, length grouping --------------------


def test_local_backbone_folder_lora_counts_and_batch_limits(tiny_run, tmp_path):
    best = tiny_run / "checkpoints" / "best"
    proc = cli(
        [
            "train",
            f"model.name_or_path={best}",
            "task.data.max_train_samples=256",
            "task.data.max_eval_samples=64",
            "trainer.epochs=2",
            "trainer.batch_size=8",
            "trainer.eval_batch_size=8",
            "trainer.limit_train_batches=2",
            "trainer.limit_eval_batches=1",
            "trainer.progress=false",
            "finetune=lora",
            "finetune.lora_target_modules=[query,value]",
        ],
        cwd=tmp_path,
    )
    trainable = int(re.search(r"trainable_parameters=(\d+)", proc.stderr).group(1))  # "prints trainable/total params"
    total = int(re.search(r"total_parameters=(\d+)", proc.stderr).group(1))
    assert 0 < trainable < total
    run = only_run_dir(tmp_path / "outputs")
    assert json.loads((run / "run.json").read_text())["config"]["model"]["name_or_path"] == str(best)
    result = json.loads((run / "eval.json").read_text())
    assert result["steps"] == 4  # 2 epochs x limit_train_batches=2
    assert result["metrics"]["samples"] == 8  # limit_eval_batches=1 batch of 8 on test
    evals = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "eval/samples" in r]
    assert evals and all(r["eval/samples"] == 8 for r in evals)


def test_lora_target_modules_and_gradient_checkpointing_apply():
    from llmft.config import FinetuneConfig, FinetuneMethod, ModelConfig
    from llmft.tasks.options import ClassificationOptions as TaskConfig
    from llmft.models.backbone import load_model, load_tokenizer, resolve
    from llmft.models.finetune import apply_method
    from llmft.tasks.classification import ClassificationTask

    cfg = ModelConfig(name_or_path="builtin:tiny-bert")
    source, weights = resolve(cfg)
    task = ClassificationTask(TaskConfig())
    task.label_names = ["negative", "positive"]
    model = load_model(task.auto_class_name, weights, load_tokenizer(source, cfg), cfg, **task.head_kwargs())
    model = apply_method(
        model, FinetuneConfig(method=FinetuneMethod.lora, lora_target_modules=["query", "value"]), "SEQ_CLS", False
    )
    adapted = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in model.named_parameters() if ".lora_A" in n}
    assert adapted == {"query", "value"}
    checkpointed = apply_method(
        load_model(task.auto_class_name, weights, load_tokenizer(source, cfg), cfg, **task.head_kwargs()),
        FinetuneConfig(),
        "SEQ_CLS",
        True,
    )
    assert checkpointed.is_activation_checkpointing  # trainer.gradient_checkpointing=true


def test_group_by_length_reaches_the_train_loader_longest_batch_first_and_resumable():
    from llmft.commands.setup import build_run
    from llmft.commands.common import to_typed
    from llmft.config import TrainConfig
    from llmft.data.loading import row_lengths

    overrides = [
        "model=tiny-bert",
        "task.data.max_train_samples=256",
        "task.data.max_eval_samples=16",
        "trainer.batch_size=8",
        "trainer.group_by_length=true",
    ]
    parts = build_run(to_typed(_compose(overrides), TrainConfig))
    sampler = parts.train_loader.batch_sampler.sampler
    lengths = row_lengths(parts.train_loader.dataset)
    order = list(sampler)
    assert sorted(order) != order and sorted(order) == list(range(256))  # every row once, shuffled
    assert max(lengths[i] for i in order[:8]) == max(lengths)  # the longest batch goes first
    sampler.set_position(0, 24)  # a resumed run starts at its place in the same order
    assert list(sampler) == order[24:]
    sampler.set_position(0, 0)
    first = next(iter(parts.train_loader))
    assert first["input_ids"].shape[1] == max(lengths)  # padded to its own longest row, not model.max_length
    assert max(lengths) < 64


# --- Generative runs: streamed and JSON output of `generate`, generations-eval.jsonl, perplexity ------------------------


@pytest.fixture(scope="module")
def gen_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gen_run")
    cli(
        [
            "train",
            "task=sft",
            "model=tiny-gpt2",
            "model.max_length=64",
            "task.data.max_train_samples=32",
            "task.data.max_eval_samples=8",
            "task.eval_generate_samples=3",
            "task.generation.max_new_tokens=4",
            "trainer.max_steps=2",
            "trainer.batch_size=8",
            "trainer.progress=false",
        ],
        cwd=root,
    )
    return only_run_dir(root / "outputs")


def test_generative_run_keeps_eval_generations_and_token_weighted_perplexity(gen_run):
    rows = [json.loads(line) for line in (gen_run / "generations-eval.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all({"input", "reference", "prediction"} <= set(r) for r in rows)
    metrics = json.loads((gen_run / "eval.json").read_text())["metrics"]
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]), rel=1e-6)


def test_generate_streams_one_prompt_and_writes_one_json_line_per_input(gen_run, tmp_path):
    prompt = "What is 2 + 3?"
    streamed = cli(["generate", f"run={gen_run}", f"prompt={prompt}", "generation.max_new_tokens=5"], cwd=tmp_path).stdout
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"prompt": prompt}, {"prompt": "What is 7 + 1?"}])
    out = cli(["generate", f"run={gen_run}", f"input={inputs}", "generation.max_new_tokens=5"], cwd=tmp_path).stdout
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["prompt"] for r in rows] == [prompt, "What is 7 + 1?"] and all(isinstance(r["generation"], str) for r in rows)
    assert streamed.strip() == rows[0]["generation"].strip()  # the streamed text is the generation, not a JSON line
