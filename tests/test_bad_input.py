"""The bad-input catalogue: each mistake gets one readable line naming the thing, exit 2, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import FAST, only_run_dir, cli, write_jsonl


def _fails(args: list[str], cwd: Path, *messages: str) -> str:
    proc = cli(args, cwd=cwd, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for message in messages:
        assert message in proc.stderr, proc.stderr[-3000:]
    return proc.stderr


def _classification(path: Path) -> list[str]:
    return ["train", *FAST, "task=classification", f"task.data.path={path}"]


def _rows(n: int = 40) -> list[dict]:
    return [{"text": f"{'good' if i % 2 else 'bad'} thing {i}", "label": "pos" if i % 2 else "neg"} for i in range(n)]


def test_non_utf8_bytes(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\n".encode() + "café bad,neg\n".encode("latin-1") * 20)
    _fails(_classification(path), tmp_path, "not valid UTF-8", str(path))


def test_empty_split(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", _rows())
    (tmp_path / "validation.jsonl").write_text("")
    write_jsonl(tmp_path / "test.jsonl", _rows(10))
    _fails(_classification(tmp_path), tmp_path, "validation")


def test_empty_texts_are_dropped_and_counted_or_refused(tmp_path):
    rows = _rows() + [{"text": "   ", "label": "neg"}, {"text": "", "label": "pos"}]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    _fails([*_classification(data), "task.data.empty_texts=error"], tmp_path, "2 empty or whitespace-only texts")
    cli(_classification(data), cwd=tmp_path)
    stats = json.loads((only_run_dir(tmp_path / "outputs") / "run.json").read_text())["plan"]["data"]
    assert sum(s["dropped_empty"] for s in stats.values()) == 2


def test_long_sequences_are_truncated_and_counted(tmp_path):
    rows = [{"text": ("word " * (3 + i % 20)).strip(), "label": "pos" if i % 2 else "neg"} for i in range(60)]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    cli([*_classification(data), "model.max_length=12"], cwd=tmp_path)
    stats = json.loads((only_run_dir(tmp_path / "outputs") / "run.json").read_text())["plan"]["data"]
    expected = sum(1 for r in rows if len(r["text"].split()) + 2 > 12)  # [CLS] words [SEP]
    assert sum(s["truncated"] for s in stats.values()) == expected > 0


def test_max_length_beyond_the_model(tmp_path):
    _fails(["train", *FAST, "model.max_length=512"], tmp_path, "model.max_length=512 is longer than the backbone's 128 positions")


def test_checkpoint_folder_that_is_not_a_model(tmp_path, tiny_run):
    (tmp_path / "empty").mkdir()
    _fails(["eval", f"run={tiny_run}", f"checkpoint={tmp_path / 'empty'}"], tmp_path, "is not a model checkpoint")
    _fails(["train", *FAST, f"model.name_or_path={tmp_path / 'empty'}"], tmp_path, "is not a model folder (no config.json)")
    _fails(["train", *FAST, f"model.name_or_path={tmp_path / 'nothing-here'}"], tmp_path, "model folder not found")


def test_old_run_folder_whose_config_no_longer_validates(tmp_path, tiny_run):
    old = tmp_path / "old-run"
    (old / ".hydra").mkdir(parents=True)
    config = (tiny_run / ".hydra" / "config.yaml").read_text().replace("optimizer:\n", "optimizer:\n  momentun: 0.9\n", 1)
    (old / ".hydra" / "config.yaml").write_text(config)
    _fails(["eval", f"run={old}"], tmp_path, "no longer validates", "optimizer.momentun", "did you mean 'momentum'")


def test_trust_remote_code_needed_but_off(tmp_path):
    model = tmp_path / "custom"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps({"model_type": "my-custom", "auto_map": {"AutoConfig": "configuration_custom.CustomConfig"}})
    )
    _fails(
        ["train", *FAST, f"model.name_or_path={model}", "model.tokenizer=builtin:minilm-l6"],
        tmp_path,
        "set model.trust_remote_code=true",
    )


def test_model_task_mismatch(tmp_path):
    from transformers import MarianConfig, MarianMTModel

    folder = tmp_path / "marian"
    MarianMTModel(
        MarianConfig(
            vocab_size=64,
            d_model=16,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=16,
            decoder_ffn_dim=16,
            max_position_embeddings=64,
            decoder_start_token_id=0,
            pad_token_id=0,
        )
    ).save_pretrained(folder)
    _fails(
        ["train", *FAST, f"model.name_or_path={folder}", "model.tokenizer=builtin:minilm-l6"],
        tmp_path,
        "has no SequenceClassification head",
    )


def test_non_finite_loss_stops_naming_the_step(tmp_path):
    err = _fails(
        ["train", *FAST, "optimizer=sgd", "optimizer.lr=1e12", "trainer.max_grad_norm=null", "trainer.max_steps=20"],
        tmp_path,
        "the loss became",
        "trainer.nonfinite=skip",
    )
    assert "at step" in err


@pytest.mark.parametrize("bad", ["generate_no_input", "generate_bad_jsonl"])
def test_generate_input_mistakes(tmp_path, tiny_run, bad):
    if bad == "generate_no_input":
        _fails(["generate", f"run={tiny_run}"], tmp_path, 'exactly one of prompt="..." or input=<file.jsonl>')
    else:
        path = tmp_path / "in.jsonl"
        path.write_text('{"text": "fine"}\n{"txt": "oops"}\n')
        _fails(["generate", f"run={tiny_run}", f"input={path}"], tmp_path, f"{path}:2 has no text field 'text'")


def test_a_run_config_cannot_smuggle_code(tmp_path, tiny_run):
    evil = tmp_path / "evil-run"
    (evil / ".hydra").mkdir(parents=True)
    config = (tiny_run / ".hydra" / "config.yaml").read_text().replace("model:\n", "model:\n  _target_: os.system\n", 1)
    (evil / ".hydra" / "config.yaml").write_text(config)
    _fails(["generate", f"run={evil}", "prompt=hi"], tmp_path, "no longer validates", "model._target_")


def test_a_qa_stride_that_leaves_no_room_is_one_line(tmp_path):
    """tiny-bert's 64 positions and the default doc_stride 64: the tokenizer's bare exception becomes one line."""
    proc = cli(["train", "task=qa", "model=tiny-bert", "trainer.max_steps=1"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "lower task.doc_stride" in proc.stderr and "Traceback" not in proc.stderr
