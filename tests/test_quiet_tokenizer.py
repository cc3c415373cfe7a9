"""No library chatter where the cut is ours: transformers' "Token indices sequence length is longer than the specified
maximum" must not reach the console when llmft tokenizes a bounded piece of a long text and truncates it itself
(multiple-choice rows in SWAG's CSV layout whose context is a token per character)."""

from __future__ import annotations

import csv
import random

from conftest import run_cli

SWAG = [
    "video-id",
    "fold-ind",
    "startphrase",
    "sent1",
    "sent2",
    "gold-source",
    "ending0",
    "ending1",
    "ending2",
    "ending3",
    "label",
]  # the columns of SWAG's train.csv / val.csv


def test_multiple_choice_rows_with_many_tokens_per_character_train_quietly(tmp_path):
    rng = random.Random(str(tmp_path))  # new text per run: no tokenization cache hides the warning
    with open(tmp_path / "train.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(SWAG)
        for i in range(40):
            context = "".join(rng.choice("!?#%&*+=") for _ in range(1500)) if i % 3 == 0 else f"Tom opened window {i}."
            writer.writerow(
                [f"lsmdc{i}", i, f"{context} Tom", context, "Tom", "gold", "left.", "stayed.", "slept.", "ran.", i % 4]
            )
    proc = run_cli(
        [
            "train",
            "task=multiple-choice",
            "model=tiny-bert",
            f"task.data.path={tmp_path / 'train.csv'}",
            "trainer.max_steps=1",
            "trainer.batch_size=4",
            "trainer.progress=false",
        ],
        cwd=tmp_path,
    )
    assert "Token indices sequence length" not in proc.stdout + proc.stderr, proc.stderr
