"""Generate llmft's bundled synthetic sentence-embedding data set (`builtin:embedding`).

Each sentence renders a *frame* (who, did what, to what, where) with words drawn from synonym groups and one of
several syntactic templates (active, passive, fronted place). Three kinds of rows:

- pair rows {"anchor", "positive", "negative"}: a paraphrase (same frame, other synonyms, other template: little word
  overlap) and a hard negative (the anchor's own words and template with one slot changed: high word overlap, other
  meaning). train.jsonl holds 2000 of them; validation (150) and test (400) hold them for retrieval (queries = anchors,
  corpus = every positive and negative of the split).
- scored rows {"sentence1", "sentence2", "score"} (validation 150, test 400): the score in [0, 1] is the share of
  frame slots the two sentences agree on. High-score pairs are
  rendered with other words, low-score pairs with the same words, so word overlap does not give the score away.

Frames of the validation and test splits never occur in train (new combinations of known words). Every row carries
every key (null where it does not apply), so the JSON reader sees one schema. Same seed -> byte-identical files.

Regenerate with:  python tools/make_embedding.py [--out DIR] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

PAIRS = {"train": 2000, "validation": 150, "test": 400}
SCORED = {"train": 0, "validation": 150, "test": 400}


def L(s: str) -> list[str]:
    return s.split("|")


# each group is one meaning; its members are interchangeable words for it
SUBJECTS = [
    L(g)
    for g in (
        "doctor|physician|medic",
        "child|kid|youngster",
        "teacher|instructor|tutor",
        "chef|cook",
        "lawyer|attorney|counsel",
        "police officer|cop|policeman",
        "student|pupil|learner",
        "farmer|grower|rancher",
        "pilot|aviator|flier",
        "singer|vocalist",
        "old man|elderly gentleman|senior citizen",
        "woman|lady",
        "nurse|caregiver",
        "neighbor|person next door",
        "boss|manager|supervisor",
        "thief|burglar|robber",
    )
]
ACTIONS = [  # (past tense forms, past participle forms)
    (L("bought|purchased|acquired"), L("bought|purchased|acquired")),
    (L("fixed|repaired|mended"), L("fixed|repaired|mended")),
    (L("cleaned|washed|scrubbed"), L("cleaned|washed|scrubbed")),
    (L("lost|misplaced"), L("lost|misplaced")),
    (L("found|discovered|located"), L("found|discovered|located")),
    (L("sold|traded away"), L("sold|traded away")),
    (L("painted|repainted"), L("painted|repainted")),
    (L("threw away|discarded|got rid of"), L("thrown away|discarded|gotten rid of")),
    (L("stole|swiped|pinched"), L("stolen|swiped|pinched")),
    (L("borrowed|took on loan"), L("borrowed|taken on loan")),
    (L("built|constructed|assembled"), L("built|constructed|assembled")),
    (L("photographed|took a picture of"), L("photographed|captured on camera")),
]
OBJECTS = [
    L(g)
    for g in (
        "car|automobile|vehicle",
        "house|home|residence",
        "bicycle|bike",
        "couch|sofa|settee",
        "phone|cellphone|mobile",
        "gift|present",
        "jacket|coat",
        "boat|vessel",
        "table|desk",
        "painting|artwork|canvas",
        "wallet|purse|billfold",
        "computer|laptop|PC",
        "guitar|instrument",
        "ring|band",
    )
]
PLACES = [
    L(g)
    for g in (
        "in the morning|early in the day|at dawn",
        "late at night|around midnight|in the dead of night",
        "downtown|in the city center|in the middle of town",
        "by the river|near the stream|on the riverbank",
        "at the airport|in the terminal",
        "in the countryside|out in the country|in a rural area",
        "last weekend|over the weekend|on Saturday",
        "at the market|at the bazaar|in the marketplace",
    )
]
SLOTS = ("subject", "action", "object", "place")


def render(frame: tuple[int, int, int, int], words: tuple[int, int, int, int], template: int) -> str:
    """One sentence for `frame` (group indices) with `words` (member index per slot, wrapped) and a template."""
    s, a, o, p = frame
    subj = SUBJECTS[s][words[0] % len(SUBJECTS[s])]
    past, participle = ACTIONS[a]
    verb, part = past[words[1] % len(past)], participle[words[1] % len(participle)]
    obj = OBJECTS[o][words[2] % len(OBJECTS[o])]
    place = PLACES[p][words[3] % len(PLACES[p])]
    if template == 0:
        return f"The {subj} {verb} the {obj} {place}."
    if template == 1:
        return f"The {obj} was {part} by the {subj} {place}."
    if template == 2:
        return f"{place[0].upper()}{place[1:]}, a {subj} {verb} a {obj}."
    return f"{place[0].upper()}{place[1:]}, the {obj} was {part} by a {subj}."


def random_frame(rng: random.Random) -> tuple[int, int, int, int]:
    return (rng.randrange(len(SUBJECTS)), rng.randrange(len(ACTIONS)), rng.randrange(len(OBJECTS)), rng.randrange(len(PLACES)))


def other_words(rng: random.Random, words: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Other members of every group where the group has them (a paraphrase shares as few words as it can)."""
    return tuple(w + 1 + rng.randrange(2) for w in words)  # type: ignore[return-value]


def changed(rng: random.Random, frame: tuple[int, int, int, int], n: int) -> tuple[int, int, int, int]:
    """`frame` with `n` slots set to another group."""
    sizes = (len(SUBJECTS), len(ACTIONS), len(OBJECTS), len(PLACES))
    out = list(frame)
    for slot in rng.sample(range(4), n):
        out[slot] = (out[slot] + 1 + rng.randrange(sizes[slot] - 1)) % sizes[slot]
    return tuple(out)  # type: ignore[return-value]


def pair_row(rng: random.Random, frame: tuple[int, int, int, int]) -> dict:
    words = tuple(rng.randrange(3) for _ in range(4))
    template = rng.randrange(4)
    anchor = render(frame, words, template)
    positive = render(frame, other_words(rng, words), (template + 1 + rng.randrange(3)) % 4)
    negative = render(changed(rng, frame, 1), words, template)  # the anchor's words and template, one slot changed
    return {"anchor": anchor, "positive": positive, "negative": negative, "sentence1": None, "sentence2": None, "score": None}


def scored_row(rng: random.Random, frame: tuple[int, int, int, int]) -> dict:
    agree = rng.choice((4, 4, 3, 2, 1, 0))  # slots the two sentences share
    other = changed(rng, frame, 4 - agree)
    words = tuple(rng.randrange(3) for _ in range(4))
    template = rng.randrange(4)
    if agree >= 3:  # close in meaning: other words and another template
        second = render(other, other_words(rng, words), (template + 1 + rng.randrange(3)) % 4)
    else:  # far in meaning: the same words and template where the slots agree
        second = render(other, words, template)
    return {
        "anchor": None,
        "positive": None,
        "negative": None,
        "sentence1": render(frame, words, template),
        "sentence2": second,
        "score": round(agree / 4, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "llmft" / "resources" / "embedding")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    all_frames = [
        (s, a, o, p)
        for s in range(len(SUBJECTS))
        for a in range(len(ACTIONS))
        for o in range(len(OBJECTS))
        for p in range(len(PLACES))
    ]
    rng.shuffle(all_frames)
    held = {"validation": all_frames[:800], "test": all_frames[800:2400]}  # frames never seen in train
    train_frames = all_frames[2400:]
    args.out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation", "test"):
        frames = train_frames if split == "train" else held[split]
        rows = [pair_row(rng, frames[i]) for i in range(PAIRS[split])]
        rows += [scored_row(rng, frames[PAIRS[split] + i]) for i in range(SCORED[split])]
        if split != "train":
            rng.shuffle(rows)
        with open(args.out / f"{split}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        print(f"{split}: {len(rows)} rows")


if __name__ == "__main__":
    main()
