"""Knowledge distillation of a decoder on the bundled SFT data (arithmetic, `task=sft`): SmolLM2-135M fine-tuned (the
teacher, 30 layers), a 15-layer student distilled from it, and the same 15-layer student fine-tuned without a teacher,
the same steps, seed and data; the validation loss along the way and the test split's exact match at the end.

    python bench/distill_lm.py                      # the three runs into outputs/bench/distill-sft/, then the tables
    python bench/distill_lm.py --roles teacher      # one role at a time (each run is skipped once it has finished)
    python bench/distill_lm.py --steps 60 --every 10

The runs (each an `llmft train` command, printed as it starts), all with model.max_length=64 (a chat-templated row is
~45 tokens), trainer.batch_size=16, trainer.max_steps=--steps, a validation eval every --every steps on 128 rows (the
task's own next-token loss; no generation while training) and task.select_metric=loss:
    teacher:   llmft train task=sft model=smollm2-135m optimizer.lr=5e-5
    distilled: llmft train task=sft model=smollm2-135m model.num_layers=15 optimizer.lr=1e-4 finetune=distill
               finetune.teacher=<teacher run>
    plain:     llmft train task=sft model=smollm2-135m model.num_layers=15 optimizer.lr=1e-4
Both students keep layers 0, 2, ..., 28 of the pretrained SmolLM2-135M-Instruct; `--roles distilled-ft plain-ft`: of
the fine-tuned teacher (model.name_or_path=<teacher run>/checkpoints/best), DistilBERT's initialisation. Each run's last checkpoint (the same
step for all) is then scored on the whole test split (200 prompts, greedy, 8 new tokens):
    llmft eval run=<run> split=test checkpoint=last task=sft task.eval_generate_samples=200
The train loss of the distilled run is its objective (alpha * next-token loss + (1 - alpha) * T^2 * KL), not comparable
with the others'; the validation loss is the next-token loss for all three.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "outputs" / "bench" / "distill-sft"
STUDENT = ["model.num_layers=15", "optimizer.lr=1e-4"]
ROLES = ("teacher", "distilled", "plain", "distilled-ft", "plain-ft")  # -ft: the student starts from the teacher's layers


def llmft(*args: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    print("+ llmft", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "llmft", *args], check=True, cwd=ROOT, env=env)


def train_args(role: str, steps: int, every: int) -> list[str]:
    """The role's `llmft train` arguments (hydra.run.dir pins the run folder)."""
    base = [
        "train",
        "task=sft",
        "model=smollm2-135m",
        "model.max_length=64",
        "trainer.batch_size=16",
        f"trainer.max_steps={steps}",
        f"trainer.eval_every={every}",
        f"trainer.log_every={min(every, 5)}",
        "trainer.limit_eval_batches=2",
        "trainer.progress=false",
        "task.eval_generate_samples=0",
        "task.select_metric=loss",
        f"hydra.run.dir={OUT / role}",
    ]
    if role == "teacher":
        return [*base, "optimizer.lr=5e-5"]
    distill = ["finetune=distill", f"finetune.teacher={OUT / 'teacher'}"] if role.startswith("distilled") else []
    start = [f"model.name_or_path={OUT / 'teacher' / 'checkpoints' / 'best'}"] if role.endswith("-ft") else []
    return [*base, *STUDENT, *start, *distill]


def run(role: str, steps: int, every: int) -> None:
    folder = OUT / role
    if not (folder / "eval.json").is_file():
        llmft(*train_args(role, steps, every))
    if not (folder / "eval-test" / "eval.json").is_file():
        llmft(
            *("eval", f"run={folder}", "split=test", "checkpoint=last", "task=sft", "task.eval_generate_samples=200"),
            f"hydra.run.dir={folder / 'eval-test'}",
        )


def curves(role: str) -> dict[str, dict[int, float]]:
    """{'train/loss': {step: value}, 'eval/loss': {step: value}} from the run's metrics.jsonl."""
    found: dict[str, dict[int, float]] = {"train/loss": {}, "eval/loss": {}}
    for line in (OUT / role / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        for key in found:
            if key in record:
                found[key][int(record["step"])] = float(record[key])
    return found


def summary(role: str) -> dict[str, Any]:
    test = json.loads((OUT / role / "eval-test" / "eval.json").read_text())["metrics"]
    plan = json.loads((OUT / role / "run.json").read_text())["plan"]
    records = [json.loads(x) for x in (OUT / role / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["train/samples_per_s"] for r in records if "train/samples_per_s" in r][1:]  # past the first window
    return {"role": role, "parameters": plan["total_parameters"], "train_per_s": sum(speeds) / len(speeds), **test}


def tables(roles: list[str], every: int) -> str:
    rows = [summary(r) for r in roles]
    lines = [
        "| model | layers | parameters | test exact match (200) | test loss | test perplexity | train samples/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        layers = 30 if r["role"] == "teacher" else 15
        lines.append(
            f"| {r['role']} | {layers} | {r['parameters'] / 1e6:.1f}M | {r['exact_match']:.1f}% | {r['loss']:.4f} "
            f"| {r['perplexity']:.3f} | {r['train_per_s']:.1f} |"
        )
    found = {r: curves(r) for r in roles}
    steps = sorted({s for r in roles for s in found[r]["eval/loss"]} | {s for r in roles for s in found[r]["train/loss"]})
    picked = [s for s in steps if s % every == 0 or s == steps[0]]
    lines += ["", "| step | " + " | ".join(f"{r} train | {r} val" for r in roles) + " |"]
    lines.append("|---" * (1 + 2 * len(roles)) + "|")
    for s in picked:
        cells = []
        for r in roles:
            train, val = found[r]["train/loss"].get(s), found[r]["eval/loss"].get(s)
            cells += [f"{train:.3f}" if train is not None else "", f"{val:.3f}" if val is not None else ""]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roles", nargs="+", default=list(ROLES[:3]), choices=ROLES)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--every", type=int, default=15, help="steps between validation evals (and table rows)")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    if not args.table_only:
        for role in args.roles:
            run(role, args.steps, args.every)
    print(tables([r for r in ROLES if (OUT / r / "eval-test" / "eval.json").is_file()], args.every))


if __name__ == "__main__":
    main()
