"""The rule's win rate of SmolLM2-135M-Instruct on held-out arithmetic: the base model, after SFT, after SFT + DPO.

The rule: the first number in the generation is the right result. The prompts are the bundled preference test split
(`llmft/resources/preference/test.jsonl`, problems in no train split of sft/ or preference/); `chosen` is the right
result. Each stage is one command (run each under its own lock; results are kept in --out/results.json):

    python bench/dpo_winrate.py --stage base
    python bench/dpo_winrate.py --stage sft          # llmft train recipe=sft-smollm2, then generate
    python bench/dpo_winrate.py --stage pairs        # on-policy pairs: the SFT model's own wrong answers as rejected
    python bench/dpo_winrate.py --stage dpo --tag dpo-onpolicy --set task.data.path=<out>/pairs-800.jsonl
    python bench/dpo_winrate.py --stage dpo          # llmft train recipe=dpo-smollm2 on the bundled pairs
    python bench/dpo_winrate.py --stage table        # the markdown table (with each run's fixed/broken prompts vs SFT)
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST = ROOT / "llmft" / "resources" / "preference" / "test.jsonl"
TRAIN = ROOT / "llmft" / "resources" / "preference" / "train.jsonl"
QUIET = ["trainer.progress=false"]
BARE = re.compile(r"\s*-?\d+\s*(\.|$|\n)")  # the format rule: the answer is a number alone


def llmft(args: list[str], cwd: Path) -> str:
    """Run one llmft command in `cwd` (its run folders go under cwd/outputs), return its stdout; fail loudly."""
    cwd.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "llmft", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return proc.stdout


def only_run(folder: Path) -> Path:
    runs = sorted(p.parent for p in folder.rglob("run.json"))
    if not runs:
        raise SystemExit(f"no run under {folder}")
    return runs[-1]


def first_number(text: str):
    match = re.search(r"-?\d+", text.replace(",", ""))
    return int(match.group()) if match else None


def chat_rendered(prompts: list[str]) -> list[str]:
    """Each prompt as a user turn of SmolLM2's chat template, ready for the answer (what the runs render themselves)."""
    from llmft.config import ModelConfig
    from llmft.models import backbone

    cfg = ModelConfig(name_or_path="builtin:smollm2-135m")
    tokenizer = backbone.load_tokenizer(backbone.resolve(cfg)[0], cfg)
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]


def generate(source: list[str], texts: list[str], out: Path) -> list[str]:
    """Greedy generations (8 new tokens, batches of 50) of `source` (run=... or model=...) for `texts`."""
    inputs = out / f"prompts-{time.time_ns()}.jsonl"
    inputs.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts))
    result = out / f"generations-{source[0].split('=')[0]}-{time.time_ns()}.jsonl"
    llmft(["generate", *source, f"input={inputs}", f"output={result}", "generation.max_new_tokens=8", "batch_size=50"], out)
    return [json.loads(line)["generation"] for line in result.read_text().splitlines()]


def win_rate(source: list[str], out: Path, prompts: int, render: bool = False) -> dict:
    """Generate greedily on the held-out prompts with `source`, score the rule; `render`: the prompts go through the
    chat template here (a bare model continues prompts as written)."""
    rows = [json.loads(line) for line in TEST.read_text().splitlines()[:prompts]]
    texts = [r["prompt"] for r in rows]
    generated = generate(source, chat_rendered(texts) if render else texts, out)
    right = [first_number(g) == int(r["chosen"]) for g, r in zip(generated, rows)]
    marks = "".join("1" if r else "0" for r in right)  # per prompt, for the paired comparison
    bare = sum(bool(BARE.match(g)) for g in generated) / len(generated)
    return {
        "win_rate": sum(right) / len(right),
        "bare_number": bare,
        "prompts": len(right),
        "right": marks,
        "examples": generated[:5],
    }


def stage_pairs(out: Path, args: argparse.Namespace, results: dict) -> dict:
    """On-policy pairs: the policy's own greedy answers to train prompts (the SFT run's, or with --start base the base
    model's), labelled by the rule; each wrong one is the rejected answer of a pair whose chosen is the right result
    (the SFT format: the number alone)."""
    if args.start == "sft" and "sft" not in results:
        raise SystemExit("run --stage sft first")
    rows = [json.loads(line) for line in TRAIN.read_text().splitlines()[: args.pair_prompts]]
    started = time.time()
    texts = [r["prompt"] for r in rows]
    if args.start == "sft":
        generated = generate([f"run={results['sft']['run']}"], texts, out)
    else:
        generated = generate(["model=smollm2-135m"], chat_rendered(texts), out)
    pairs = [
        {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": g.strip()}
        for r, g in zip(rows, generated)
        if first_number(g) != int(r["chosen"]) and g.strip() and g.strip() != r["chosen"]
    ]
    file = out / f"pairs-{'' if args.start == 'sft' else 'base-'}{len(rows)}.jsonl"
    file.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return {"file": str(file), "prompts": len(rows), "pairs": len(pairs), "generate_s": round(time.time() - started)}


def stage_base(out: Path, args: argparse.Namespace) -> dict:
    return win_rate(["model=smollm2-135m"], out, args.prompts, render=True)


def stage_sft(out: Path, args: argparse.Namespace) -> dict:
    folder = out / "sft"
    started = time.time()
    llmft(
        [
            "train",
            "recipe=sft-smollm2",
            *([f"trainer.max_steps={args.sft_steps}"] if args.sft_steps else []),
            "trainer.eval_every=0",
            "task.eval_generate_samples=0",
            "task.select_metric=loss",
            "task.data.max_eval_samples=64",
            *QUIET,
        ],
        folder,
    )
    run = only_run(folder)
    return {"run": str(run), "train_s": round(time.time() - started), **win_rate([f"run={run}"], out, args.prompts)}


def stage_dpo(out: Path, args: argparse.Namespace, results: dict) -> dict:
    """DPO from the SFT run's best checkpoint (or with --start base from the base model), then the win rate."""
    if args.start == "sft" and "sft" not in results:
        raise SystemExit("run --stage sft first")
    folder = out / args.tag
    started = time.time()
    start = [f"model.name_or_path={Path(results['sft']['run']) / 'checkpoints' / 'best'}"] if args.start == "sft" else []
    llmft(["train", "recipe=dpo-smollm2", *start, f"trainer.max_steps={args.dpo_steps}", *args.set, *QUIET], folder)
    run = only_run(folder)
    metrics = json.loads((run / "eval.json").read_text())["metrics"]
    return {
        "run": str(run),
        "train_s": round(time.time() - started),
        "test_rewards_accuracy": metrics.get("rewards/accuracy"),
        **win_rate([f"run={run}"], out, args.prompts),
    }


def paired(run: dict, start: dict) -> str:
    """Prompts the starting model (SFT, or the base) got wrong and this one right / right and wrong."""
    if "right" not in run or "right" not in start or run is start:
        return ""
    pairs = list(zip(start["right"], run["right"]))
    return f"+{pairs.count(('0', '1'))} / -{pairs.count(('1', '0'))}"


def table(results: dict) -> str:
    """One row per scored model: the right-result rate (binomial 95% half-width), fixed/broken prompts against the
    model it started from, the share of answers that are a bare number (the format rule), train seconds."""
    lines = [
        "| model | right result (95% interval) | vs its start: fixed / broken | a bare number | prompts | train s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    names = {"base": "SmolLM2-135M-Instruct", "sft": "after SFT (LoRA)", "dpo": "after SFT + DPO (LoRA)"}
    for key, run in results.items():
        if key.startswith("dpo-"):
            names[key] = f"after {'SFT + ' if run.get('start', 'sft') == 'sft' else ''}DPO ({key}: {' '.join(run['overrides'])})"
    for key, name in names.items():
        if key in results:
            r = results[key]
            half = 1.96 * math.sqrt(r["win_rate"] * (1 - r["win_rate"]) / r["prompts"])
            start = results.get(r.get("start", "sft") if key.startswith("dpo") else "base", {})
            bare = f"{r['bare_number']:.0%}" if "bare_number" in r else ""
            cells = [name, f"{r['win_rate']:.1%} (±{half:.1%})", paired(r, start), bare, r["prompts"], r.get("train_s", "")]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=["base", "sft", "pairs", "dpo", "table"], required=True)
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench-dpo")
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--sft-steps", type=int, default=0, help="0: the recipe's length (one epoch)")
    ap.add_argument("--pair-prompts", type=int, default=800, help="train prompts the SFT model answers (--stage pairs)")
    ap.add_argument("--dpo-steps", type=int, default=120)
    ap.add_argument("--start", choices=["sft", "base"], default="sft", help="the policy of --stage pairs and dpo")
    ap.add_argument("--set", nargs="*", default=[], help="extra overrides of the DPO run, e.g. task.sft_weight=1.0")
    ap.add_argument("--tag", default="dpo", help="the name its result is kept under (a variant: dpo-rpo)")
    args = ap.parse_args(argv)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "results.json"
    results = json.loads(store.read_text()) if store.is_file() else {}
    if args.stage == "base":
        results["base"] = stage_base(args.out, args)
    elif args.stage == "sft":
        results["sft"] = stage_sft(args.out, args)
    elif args.stage == "pairs":
        results[f"pairs-{'' if args.start == 'sft' else 'base-'}{args.pair_prompts}"] = stage_pairs(args.out, args, results)
    elif args.stage == "dpo":
        results[args.tag] = {**stage_dpo(args.out, args, results), "overrides": args.set, "start": args.start}
    store.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
