"""finetune.augment (distillation's transfer rows, TinyBERT-style): word-swapped copies of the train rows, labelled by
the teacher, added to the train split. The copies keep their rows' shape and are seeded; each family's copies carry
the teacher's own answers (top class, tag per supervised word, score); the options combine with cache_teacher and
resume; what cannot work is refused in one line."""

from __future__ import annotations

import re

import pytest
import torch
from datasets import Dataset

from conftest import FAST, cli, only_run_dir
from llmft.data.word_swaps import shape, swapped_copies, word_pools
from llmft.engine.token_loss import IGNORE

SMALL = ["model=tiny-bert", "task.data.max_train_samples=48", "task.data.max_eval_samples=16", "trainer.batch_size=8"]
DISTILL = ["finetune=distill", "finetune.teacher=tiny-bert"]


def test_copies_keep_each_rows_shape_and_columns_and_swap_only_within_a_shape():
    rows = Dataset.from_dict(
        {
            "tokens": [["Anna", "won", "in", "2009", "."], ["Paris", "beat", "Leeds", "3-1", ","]],
            "tags": [["B-PER", "O", "O", "O", "O"], ["B-ORG", "O", "B-ORG", "O", "O"]],
            "id": [7, 8],
        }
    )
    copies = swapped_copies(rows, ["tokens"], copies=3, share=1.0, seed=0)
    assert len(copies) == 6 and list(copies["id"]) == [7, 8] * 3 and list(copies["tags"]) == list(rows["tags"]) * 3
    pools = word_pools(rows, ["tokens"])
    for original, copy in zip(list(rows["tokens"]) * 3, copies["tokens"]):
        assert len(copy) == len(original)
        for before, after in zip(original, copy):
            assert shape(after) == shape(before)
            assert after == before if shape(before) is None else after in pools[shape(before)]  # punctuation stays
    assert any(c != o for c, o in zip(copies["tokens"], list(rows["tokens"]) * 3))
    assert list(swapped_copies(rows, ["tokens"], 3, 1.0, seed=0)["tokens"]) == list(copies["tokens"])  # seeded
    assert list(swapped_copies(rows, ["tokens"], 3, 1.0, seed=1)["tokens"]) != list(copies["tokens"])


def test_string_columns_are_swapped_word_by_word_and_a_share_swaps_about_that_share():
    text = " ".join(f"word{i % 50}" for i in range(2000)).replace("word", "w")
    rows = Dataset.from_dict({"sentence": [text], "label": [1]})
    copy = swapped_copies(rows, ["sentence"], 1, 0.3, seed=3)["sentence"][0].split()
    assert len(copy) == 2000
    changed = sum(a != b for a, b in zip(copy, text.split())) / 2000
    assert 0.25 < changed < 0.32  # 0.3 drawn, minus the draws that picked the same word (1 in 50)


def test_a_words_punctuation_stays_in_place_and_pools_hold_bare_words():
    texts = ['"Great movie, really (truly) good!" 10/10.', "Awful plot; dull."]
    rows = Dataset.from_dict({"text": texts, "label": [1, 0]})
    pools = word_pools(rows, ["text"])
    assert sorted(pools["lower"]) == ["dull", "good", "movie", "plot", "really", "truly"] and "10/10" in pools["number"]
    copies = swapped_copies(rows, ["text"], 4, 1.0, seed=0)["text"]
    assert copies != texts * 4
    marks = re.compile(r"[^\w/]+")  # everything but the words: punctuation and spaces
    assert [marks.findall(copy) for copy in copies] == [marks.findall(text) for text in texts * 4]
    missing = Dataset.from_dict({"text": ["a fine film", None], "label": [1, 0]})
    assert swapped_copies(missing, ["text"], 1, 1.0, seed=0)["text"][1] is None  # dropped (or refused) like its row


def _parts(overrides: list[str]):
    from test_audit_promises import _compose

    from llmft.commands.common import to_typed
    from llmft.commands.setup import build_run
    from llmft.config import TrainConfig

    return build_run(to_typed(_compose([*SMALL, *overrides]), TrainConfig))


def _teacher_answer(teacher, row: dict) -> object:
    """The teacher's answer for one row, computed alone (no batch, no padding)."""
    inputs = {k: torch.tensor([row[k]]) for k in ("input_ids", "attention_mask", "token_type_ids") if k in row}
    with torch.no_grad():
        logits = teacher(**inputs).logits[0].float()
    if isinstance(row["labels"], float):
        return logits.item()
    if isinstance(row["labels"], list):
        top = logits.argmax(-1).tolist()
        return [IGNORE if gold == IGNORE else t for gold, t in zip(row["labels"], top)]
    return int(logits.argmax(-1))


@pytest.mark.parametrize("task", ["ner", "sentiment", "sts"])
def test_each_familys_copies_are_labelled_with_the_teachers_own_answers(task):
    plain = _parts([f"task={task}", *DISTILL]).train_loader.dataset
    parts = _parts([f"task={task}", *DISTILL, "finetune.augment=2"])
    train = parts.train_loader.dataset
    assert len(train) == 3 * len(plain) and parts.plan["train_examples"] == 3 * len(plain)
    assert parts.plan["transfer_rows"] == 2 * len(plain)
    assert train.select(range(len(plain))).to_list() == plain.to_list()  # the gold rows first, unchanged
    teacher = parts.loss_fn.teacher
    copies = train.select(range(len(plain), len(train)))
    differ = 0
    for row, original in zip(copies, plain.to_list() * 2):
        answer = _teacher_answer(teacher, row)
        if isinstance(answer, float):
            assert row["labels"] == pytest.approx(answer, abs=1e-4)
        else:
            assert row["labels"] == answer
        if task == "ner":  # the copy supervises the same words as its row (one label per word's first sub-word)
            assert len([x for x in row["labels"] if x != IGNORE]) == len([x for x in original["labels"] if x != IGNORE])
        differ += row["input_ids"] != original["input_ids"]
    assert differ > len(copies) // 2


def test_augment_with_cache_teacher_trains_and_reports_the_rows(tmp_path):
    proc = cli(
        ["train", *FAST, "task=ner", *DISTILL, "finetune.augment=1", "finetune.cache_teacher=true", "trainer.max_steps=2"],
        cwd=tmp_path,
    )
    import json

    plan = json.loads((only_run_dir(tmp_path / "outputs") / "run.json").read_text())["plan"]
    assert plan["train_examples"] == 2 * plan["data"]["train"]["rows"] and plan["transfer_rows"] == plan["data"]["train"]["rows"]
    assert f"transfer_rows={plan['transfer_rows']}," in proc.stdout + proc.stderr  # the console says how many are copies


def test_with_the_cache_the_copies_pass_through_the_teacher_once_and_their_labels_agree_with_it(monkeypatch):
    """finetune.augment + finetune.cache_teacher: the pass that labels the copies also fills their cache rows, so the
    teacher runs over each train row once (N + 1 passes of the split, not 2N + 1), and each copy's cached outputs are
    the teacher's own for that copy, whose arg-max is the copy's label."""
    from llmft.engine import teacher_cache

    passed, teachers = [], []
    passes = teacher_cache.teacher_passes

    def counted(teacher, features, *how):
        passed.append(len(features)), teachers.append(teacher)
        return passes(teacher, features, *how)

    monkeypatch.setattr(teacher_cache, "teacher_passes", counted)
    parts = _parts(["task=ner", *DISTILL, "finetune.augment=2", "finetune.cache_teacher=true"])
    train, cache = parts.train_loader.dataset.ds, parts.loss_fn.teacher  # IndexedRows: the rows, found by index
    assert isinstance(cache, teacher_cache.TeacherCache) and len(cache) == len(train) == 3 * (len(train) // 3)
    assert sum(passed) == len(train)  # each row once: the copies' labelling pass, then the gold rows' cache pass
    teacher = teachers[0]
    for i in range(len(train) // 3, len(train), 7):  # copies
        row = train[i]
        inputs = {k: torch.tensor([row[k]]) for k in ("input_ids", "attention_mask", "token_type_ids") if k in row}
        with torch.no_grad():
            alone = teacher(**inputs).logits[0].float()
        assert torch.allclose(cache.outputs[i].cpu(), alone, atol=1e-5)
        assert row["labels"] == _teacher_answer(teacher, row)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["finetune=full", "finetune.augment=2"], "finetune.augment is used by finetune=distill only"),
        ([*DISTILL, "finetune.augment=-1"], "finetune.augment must be >= 0"),
        ([*DISTILL, "finetune.augment=1", "finetune.augment_words=0"], "finetune.augment_words must be in (0, 1]"),
        (
            ["task=sft", "model=tiny-gpt2", "finetune=distill", "finetune.teacher=tiny-gpt2", "finetune.augment=1"],
            "task.family=causal_lm has other rows: set finetune.augment=0",
        ),
    ],
)
def test_what_augment_cannot_do_is_refused_in_one_line(tmp_path, overrides, message):
    proc = cli(["train", *FAST, *overrides], cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) <= 2


@pytest.mark.parametrize("task, lr", [("ner", ["optimizer.lr=1e-4"]), ("sentiment", [])])
def test_the_distill_recipes_are_the_measured_commands(task, lr):
    """recipe=distill-<task>-minilm is the command bench/BENCHMARKS.md measured, option for option."""
    from test_audit_promises import _compose

    from llmft.commands.common import to_typed
    from llmft.config import TrainConfig

    measured = [f"task={task}", "model=minilm-l6", "model.num_layers=3", "trainer.epochs=4", *lr, "finetune=distill"]
    measured += ["finetune.alpha=0.1", "finetune.hidden_weight=1", "finetune.augment=3", "finetune.teacher=runs/t"]
    recipe = [f"recipe=distill-{task}-minilm", "finetune.teacher=runs/t"]
    assert to_typed(_compose(recipe), TrainConfig) == to_typed(_compose(measured), TrainConfig)


def test_the_distill_recipe_runs_on_a_tiny_model_and_asks_for_its_teacher(tmp_path):
    tiny = ["model=tiny-bert", "model.num_layers=1", "task.data.max_train_samples=32", "task.data.max_eval_samples=8"]
    args = ["train", "recipe=distill-ner-minilm", *tiny, "trainer.max_steps=2", "trainer.progress=false"]
    proc = cli(args, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "finetune=distill needs finetune.teacher=" in proc.stderr, proc.stderr[-2000:]
    proc = cli([*args, "finetune.teacher=tiny-bert"], cwd=tmp_path)
    assert "finetune=distill" in proc.stdout + proc.stderr and "transfer_rows=96," in proc.stdout + proc.stderr
