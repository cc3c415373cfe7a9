"""Generate llmft's bundled synthetic preference data (task=dpo / task=reward, and task=kto).

Writes train.jsonl / validation.jsonl / test.jsonl into two folders of llmft/resources/:
  preference/  {"prompt", "chosen", "rejected"}: a 2-digit addition/subtraction question, the right result, and a
               plausible wrong one (off by one, off by ten, digits swapped, or the other operation) (2000/200/200)
  kto/         {"prompt", "completion", "label"}: the same questions, each with the right result (label true) or a
               plausible wrong one (label false), half and half (2000/200/200)
The questions are those of tools/make_generative.py (its phrasings and its split of every 2-digit problem into disjoint
test/validation/train pools, same seed): no validation/test problem is in any train split of sft/ or of these sets,
so a model tuned on sft/ and then here is scored on problems it never saw. The preferred behaviour is checkable by a
rule: the answer is the right number. Same seed -> byte-identical files. Data card: resources/preference/README.md.

Regenerate with:  python tools/make_preference.py [--out DIR] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_generative import ask, problem_pools  # noqa: E402

SIZES = {"train": 2000, "validation": 200, "test": 200}


def wrong_answer(r: random.Random, key: tuple[int, int, str], right: int) -> int:
    """A plausible mistake: off by one or ten, the digits swapped, or the other operation; never the right result."""
    a, b, op = key
    candidates = [
        right + 1,
        right - 1,
        right + 10,
        right - 10,
        int(str(right)[::-1]) if right >= 10 else right + 2,
        a - b if op == "+" else a + b,
    ]
    candidates = [c for c in candidates if c != right and c >= 0]
    return r.choice(candidates)


def make_pair(r: random.Random, key: tuple[int, int, str]) -> dict:
    question, answer = ask(r, key)
    return {"prompt": question, "chosen": answer, "rejected": str(wrong_answer(r, key, int(answer)))}


def make_unpaired(r: random.Random, key: tuple[int, int, str], desirable: bool) -> dict:
    pair = make_pair(r, key)
    return {"prompt": pair["prompt"], "completion": pair["chosen"] if desirable else pair["rejected"], "label": desirable}


def write(folder: Path, split: str, rows: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="ascii")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "llmft" / "resources")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    pools = problem_pools(args.seed)
    for split, size in SIZES.items():
        pool = pools[split]
        r = random.Random(f"preference:{split}:{args.seed}")
        keys = [pool[i % len(pool)] for i in r.sample(range(len(pool)), min(size, len(pool)))]
        write(args.out / "preference", split, [make_pair(r, k) for k in keys])
        r = random.Random(f"kto:{split}:{args.seed}")
        write(args.out / "kto", split, [make_unpaired(r, k, i % 2 == 0) for i, k in enumerate(keys)])


if __name__ == "__main__":
    main()
