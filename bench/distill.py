"""Knowledge distillation on the bundled sentiment and NER data: MiniLM-L6 fine-tuned (the teacher), a 3-layer student
distilled from it, and the same 3-layer student fine-tuned without a teacher; test quality and CPU inference speed.

    python bench/distill.py                        # trains the three runs per task into outputs/bench/distill-<task>/
    python bench/distill.py --tasks sentiment      # one task
    python bench/distill.py --skip-train           # only measure the runs already there
    python bench/distill.py --markdown out.md      # appends the table

The runs are (each an `llmft train` command, printed as it starts):
    teacher:   llmft train task=<task> model=minilm-l6
    distilled: llmft train task=<task> model=minilm-l6 model.num_layers=3 finetune=distill finetune.teacher=<teacher run>
    plain:     llmft train task=<task> model=minilm-l6 model.num_layers=3
Both students start from the same layers (0, 2, 4) of the pretrained MiniLM-L6. Speed: the best checkpoint scores the
whole test split in batches of --batch-size (tokenized once beforehand) with one intra-op thread, after a warm-up pass.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "outputs" / "bench"
METRIC = {"sentiment": "accuracy", "ner": "f1"}
STUDENT = ["model.num_layers=3"]


def llmft(*args: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    print("+ llmft", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "llmft", *args], check=True, cwd=ROOT, env=env)


def run_dir(task: str, role: str) -> Path:
    return OUT / f"distill-{task}" / role


def commands(task: str, extra: list[str], student: list[str], tag: str, from_teacher: bool) -> dict[str, list[str]]:
    """Each role's `llmft train` arguments (hydra.run.dir pins the run folder). Both students get `student` overrides;
    `from_teacher`: they start from the fine-tuned teacher's layers instead of the pretrained model's."""
    base = ["train", f"task={task}", "model=minilm-l6", "trainer.progress=false", *extra]
    teacher = run_dir(task, "teacher")
    students = [*base, *STUDENT, *student] + ([f"model.name_or_path={teacher}/checkpoints/best"] if from_teacher else [])
    return {
        "teacher": [*base, f"hydra.run.dir={teacher}"],
        "distilled": [
            *students,
            "finetune=distill",
            f"finetune.teacher={teacher}",
            f"hydra.run.dir={run_dir(task, 'distilled' + tag)}",
        ],
        "plain": [*students, f"hydra.run.dir={run_dir(task, 'plain' + tag)}"],
    }


def speed(run: Path, batch_size: int) -> tuple[float, int]:
    """(test samples per second on one CPU thread, parameters) of the run's best checkpoint."""
    import torch

    from llmft.commands.common import checkpoint_dir, load_run_config
    from llmft.data.scored_rows import scored_rows
    from llmft.config import TrainConfig
    from llmft.data import loading as data
    from llmft.export.source import load_source

    torch.set_num_threads(1)
    saved = load_run_config(run, TrainConfig)
    source = load_source(run, saved, checkpoint_dir(run, "best"))
    dataset, _ = scored_rows(run, saved.task.data, saved.task.data, "test")
    features = source.task.prepare({"test": dataset})["test"]
    loader = data.make_loader(features, batch_size, source.task.collator(source.tokenizer), False, 0)
    names = source.input_names()
    batches = [{n: b[n] for n in names} for b in loader]
    model = source.model.eval()
    with torch.inference_mode():
        for batch in batches[:3]:
            model(**batch)  # warm-up
        start = time.perf_counter()
        for batch in batches:
            model(**batch)
        seconds = time.perf_counter() - start
    return sum(len(b["input_ids"]) for b in batches) / seconds, sum(p.numel() for p in model.parameters())


def measure(task: str, batch_size: int, tag: str) -> list[dict[str, Any]]:
    rows = []
    for role in ("teacher", "distilled" + tag, "plain" + tag):
        run = run_dir(task, role)
        result = json.loads((run / "eval.json").read_text())
        per_s, params = speed(run, batch_size)
        rows.append(
            {
                "task": task,
                "role": role,
                "metric": METRIC[task],
                "value": result["metrics"][METRIC[task]],
                "samples_per_s": per_s,
                "parameters": params,
            }
        )
    teacher = rows[0]["samples_per_s"]
    for row in rows:
        row["speedup"] = row["samples_per_s"] / teacher
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| task | model | layers | parameters | test metric | CPU samples/s (1 thread) | vs teacher |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        layers = 6 if r["role"] == "teacher" else 3
        lines.append(
            f"| {r['task']} | {r['role']} | {layers} | {r['parameters'] / 1e6:.1f}M | {r['metric']} {r['value']:.4f} "
            f"| {r['samples_per_s']:.1f} | {r['speedup']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["sentiment", "ner"])
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--extra", nargs="*", default=[], help="overrides for every run, e.g. trainer.epochs=3")
    parser.add_argument(
        "--student",
        nargs="*",
        default=[],
        help="overrides for both students, e.g. trainer.epochs=4 (finetune.* ones only matter to the distilled one)",
    )
    parser.add_argument("--from-teacher", action="store_true", help="students start from the fine-tuned teacher's layers")
    parser.add_argument("--tag", default="", help="suffix of the students' run folders (one per variant)")
    args = parser.parse_args()
    rows = []
    for task in args.tasks:
        if not args.skip_train:
            for role, argv in commands(task, args.extra, args.student, args.tag, args.from_teacher).items():
                if not (run_dir(task, role if role == "teacher" else role + args.tag) / "eval.json").is_file():
                    llmft(*argv)
        rows += measure(task, args.batch_size, args.tag)
    text = table(rows)
    print(text)
    if args.markdown:
        with args.markdown.open("a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
