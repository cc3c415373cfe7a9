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

import report

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "outputs" / "bench"
METRIC = {"sentiment": "accuracy", "ner": "f1"}
STUDENT = ["model.num_layers=3"]


def llmft(*args: str) -> None:
    """Run one llmft command; under LLMFT_BENCH_LOCK=<file> each command holds that flock (a CPU shared by jobs)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    lock = os.environ.get("LLMFT_BENCH_LOCK")
    print("+ llmft", " ".join(args), flush=True)
    prefix = ["flock", lock] if lock else []
    subprocess.run([*prefix, sys.executable, "-m", "llmft", *args], check=True, cwd=ROOT, env=env)


def run_dir(task: str, role: str) -> Path:
    return OUT / f"distill-{task}" / role


def commands(args: argparse.Namespace, task: str) -> dict[str, list[str]]:
    """Each role's `llmft train` arguments (hydra.run.dir pins the run folder). The teacher gets --teacher-extra, both
    students --student (the distilled one also --distill); --from-teacher: the students start from the fine-tuned
    teacher's layers instead of the pretrained model's."""
    base = ["train", f"task={task}", "model=minilm-l6", "trainer.progress=false", *args.extra]
    teacher, tag = run_dir(task, "teacher" + args.teacher_tag), args.tag
    students = [*base, *STUDENT, *args.student]
    students += [f"model.name_or_path={teacher}/checkpoints/best"] if args.from_teacher else []
    return {
        "teacher": [*base, *args.teacher_extra, f"hydra.run.dir={teacher}"],
        "distilled": [
            *students,
            "finetune=distill",
            f"finetune.teacher={teacher}",
            *args.distill,
            f"hydra.run.dir={run_dir(task, 'distilled' + tag + args.distill_tag)}",
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


def measure(task: str, batch_size: int, tag: str, teacher_tag: str, distill_tag: str) -> list[dict[str, Any]]:
    rows = []
    for role in ("teacher" + teacher_tag, "distilled" + tag + distill_tag, "plain" + tag):
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
        layers = 6 if r["role"].startswith("teacher") else 3
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
    parser.add_argument("--teacher-extra", nargs="*", default=[], help="overrides for the teacher, e.g. trainer.epochs=4")
    parser.add_argument("--teacher-tag", default="", help="suffix of the teacher's run folder (one per teacher)")
    parser.add_argument("--distill", nargs="*", default=[], help="overrides for the distilled student, e.g. finetune.alpha=0.1")
    parser.add_argument("--distill-tag", default="", help="a further suffix of the distilled run's folder only")
    parser.add_argument("--skip-measure", action="store_true", help="train only (measure later with --skip-train)")
    args = parser.parse_args()
    rows = []
    for task in args.tasks:
        if not args.skip_train:
            for role, argv in commands(args, task).items():
                suffix = {"teacher": args.teacher_tag, "distilled": args.tag + args.distill_tag}.get(role, args.tag)
                folder = role + suffix
                if not (run_dir(task, folder) / "eval.json").is_file():
                    llmft(*argv)
        if not args.skip_measure:
            rows += measure(task, args.batch_size, args.tag, args.teacher_tag, args.distill_tag)
    if not rows:
        return
    text = table(rows)
    report.emit(text, args.markdown)


if __name__ == "__main__":
    main()
