"""Generate llmft's bundled synthetic semantic-textual-similarity set (sentence pairs scored 0-5).

Each sentence renders an event: who (subject), did what (action, maybe negated), to what (object), where and when.
Every part has several wordings (synonyms, active or passive voice), and a pair's score is the share of the meaning
the two events have in common (subject 1.25, action 1.25, object 1.25, place 0.625, time 0.625; a part told in one
sentence only counts half). Matching parts are worded differently where possible and differing parts are often
look-alikes that share words ("the doctor" / "the doctor's neighbour", "bought" / "did not buy", "the car" / "the car
keys"), so word overlap says little about the score: paraphrases share few words, unrelated sentences share many.
Writes train.jsonl (3000 pairs), validation.jsonl (500), test.jsonl (1000): {"sentence1", "sentence2", "score"}.
Same seed -> byte-identical files.

Regenerate with:  python tools/make_sts.py [--out DIR] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SIZES = {"train": 3000, "validation": 500, "test": 1000}
WEIGHTS = {"subject": 1.25, "action": 1.25, "object": 1.25, "place": 0.625, "time": 0.625}

PEOPLE = [
    ["doctor", "physician", "medic"],
    ["child", "kid", "youngster"],
    ["chef", "cook"],
    ["police officer", "cop", "policeman"],
    ["lawyer", "attorney"],
    ["student", "pupil"],
    ["woman", "lady"],
    ["man", "guy", "gentleman"],
    ["teacher", "instructor"],
    ["sailor", "seaman", "mariner"],
    ["farmer", "grower"],
    ["neighbour", "person next door"],
    ["boss", "manager", "supervisor"],
    ["pilot", "aviator"],
    ["nurse", "carer"],
    ["singer", "vocalist"],
]
PERSON_ADJ = [
    ["old", "elderly", "aged"],
    ["young", "youthful"],
    ["tall", "lanky"],
    ["angry", "furious", "irritated"],
    ["happy", "cheerful", "glad"],
    ["tired", "exhausted", "weary"],
    ["", ""],
]
RELATIONS = [["neighbour", "next-door neighbour"], ["sister", "sibling"], ["friend", "pal", "buddy"], ["son", "boy"]]
# (past, base, participle or None: no passive)
ACTIONS = [
    [("bought", "buy", "bought"), ("purchased", "purchase", "purchased"), ("picked up", "pick up", None)],
    [("fixed", "fix", "fixed"), ("repaired", "repair", "repaired"), ("mended", "mend", "mended")],
    [("cleaned", "clean", "cleaned"), ("washed", "wash", "washed"), ("scrubbed", "scrub", "scrubbed")],
    [("lost", "lose", "lost"), ("misplaced", "misplace", "misplaced"), ("could not find", "manage to find", None)],
    [("sold", "sell", "sold"), ("got rid of", "get rid of", None), ("auctioned off", "auction off", "auctioned off")],
    [("carried", "carry", "carried"), ("hauled", "haul", "hauled"), ("lugged", "lug", "lugged")],
    [("found", "find", "found"), ("discovered", "discover", "discovered"), ("came across", "come across", None)],
    [("broke", "break", "broken"), ("smashed", "smash", "smashed"), ("shattered", "shatter", "shattered")],
    [("borrowed", "borrow", "borrowed"), ("took out a loan of", "take out a loan of", None)],
    [
        ("photographed", "photograph", "photographed"),
        ("took a picture of", "take a picture of", None),
        ("snapped a photo of", "snap a photo of", None),
    ],
    [("inspected", "inspect", "inspected"), ("examined", "examine", "examined"), ("checked over", "check over", "checked over")],
    [("painted", "paint", "painted"), ("put a fresh coat of paint on", "put a fresh coat of paint on", None)],
]
THINGS = [
    ["car", "automobile", "vehicle"],
    ["bicycle", "bike", "cycle"],
    ["sofa", "couch", "settee"],
    ["phone", "mobile", "cellphone"],
    ["jacket", "coat"],
    ["boat", "vessel", "dinghy"],
    ["lamp", "light fixture"],
    ["package", "parcel"],
    ["painting", "canvas"],
    ["bag", "handbag", "purse"],
    ["rug", "carpet"],
    ["bucket", "pail"],
    ["laptop", "notebook computer"],
    ["guitar", "six-string"],
    ["watch", "wristwatch", "timepiece"],
    ["fridge", "refrigerator"],
]
PARTS = [["keys", "key ring"], ["lock", "padlock"], ["cover", "case"], ["charger", "power adapter"], ["manual", "instructions"]]
THING_ADJ = [
    ["red", "crimson", "scarlet"],
    ["big", "large", "huge"],
    ["small", "little", "tiny"],
    ["new", "brand-new"],
    ["old", "worn-out", "battered"],
    ["expensive", "costly", "pricey"],
    ["", ""],
]
PLACES = [
    ["at the market", "at the bazaar"],
    ["in the garden", "in the yard", "in the backyard"],
    ["at the station", "at the depot"],
    ["by the river", "on the riverbank"],
    ["downtown", "in the city centre"],
    ["at the beach", "on the shore", "by the seaside"],
    ["at the office", "at work", "at the workplace"],
    ["in the kitchen", "in the scullery"],
    ["at the airport", "at the airfield"],
    ["in the garage", "in the workshop"],
]
TIMES = [
    ["yesterday", "the day before"],
    ["this morning", "earlier today"],
    ["last week", "seven days ago"],
    ["on Monday", "at the start of the week"],
    ["at night", "after dark", "late at night"],
    ["at noon", "at midday", "around lunchtime"],
    ["last year", "twelve months ago"],
    ["on Sunday", "at the weekend"],
]


def event(rng: random.Random) -> dict:
    """A random meaning: indices into the tables above (subject/object may be a relative/part of another)."""
    return {
        "subject": (rng.randrange(len(PEOPLE)), rng.randrange(len(PERSON_ADJ)), None),
        "action": (rng.randrange(len(ACTIONS)), False),
        "object": (rng.randrange(len(THINGS)), rng.randrange(len(THING_ADJ)), None),
        "place": rng.randrange(len(PLACES)) if rng.random() < 0.7 else None,
        "time": rng.randrange(len(TIMES)) if rng.random() < 0.6 else None,
    }


def mutate(rng: random.Random, part: str, value, lookalike: bool):
    """A different value of `part`; a look-alike keeps the words (a relative of the same person, a part of the same
    thing, the same action negated) where it can."""
    if part == "subject":
        person, adj, rel = value
        if lookalike:
            return (person, adj, rng.choice([r for r in range(len(RELATIONS)) if r != rel]))
        return (
            rng.choice([p for p in range(len(PEOPLE)) if p != person]),
            adj if rng.random() < 0.6 else rng.randrange(len(PERSON_ADJ)),
            rel,
        )
    if part == "action":
        action, negated = value
        return (action, not negated) if lookalike else (rng.choice([a for a in range(len(ACTIONS)) if a != action]), negated)
    if part == "object":
        thing, adj, sub = value
        if lookalike:
            return (thing, adj, rng.choice([s for s in range(len(PARTS)) if s != sub]))
        return (
            rng.choice([t for t in range(len(THINGS)) if t != thing]),
            adj if rng.random() < 0.6 else rng.randrange(len(THING_ADJ)),
            sub,
        )
    table = PLACES if part == "place" else TIMES
    return rng.choice([i for i in range(len(table)) if i != value])


def similarity(a: dict, b: dict) -> float:
    total = 0.0
    for part, weight in WEIGHTS.items():
        x, y = a[part], b[part]
        if part == "action" and x[0] == y[0] and x[1] != y[1]:
            total += 0.2 * weight  # the same act, negated: hardly the same meaning
        elif x == y:
            total += weight
        elif x is None or y is None:
            total += 0.5 * weight  # told in one sentence only
    return total


def pick(rng: random.Random, words: list, avoid=None):
    options = [w for w in words if w != avoid] or words
    return rng.choice(options)


def render(rng: random.Random, ev: dict, avoid: dict) -> tuple[str, dict]:
    """One wording of `ev`; `avoid` holds the other sentence's word choices (matching parts get other words)."""
    used: dict = {}
    person, padj, rel = ev["subject"]
    used["padj"] = pick(rng, PERSON_ADJ[padj], avoid.get("padj"))
    used["person"] = pick(rng, PEOPLE[person], avoid.get("person"))
    subject = " ".join(w for w in ("the", used["padj"], used["person"]) if w)
    if rel is not None:
        used["rel"] = pick(rng, RELATIONS[rel], avoid.get("rel"))
        subject = f"{subject}'s {used['rel']}" if rng.random() < 0.5 else f"the {used['rel']} of {subject}"
    thing, tadj, sub = ev["object"]
    used["tadj"] = pick(rng, THING_ADJ[tadj], avoid.get("tadj"))
    used["thing"] = pick(rng, THINGS[thing], avoid.get("thing"))
    obj = " ".join(w for w in ("the", used["tadj"], used["thing"]) if w)
    if sub is not None:
        used["part"] = pick(rng, PARTS[sub], avoid.get("part"))
        obj = f"the {used['part']} of {obj}"
    action, negated = ev["action"]
    past, base, participle = pick(rng, ACTIONS[action], avoid.get("verb"))
    used["verb"] = (past, base, participle)
    passive = participle is not None and rng.random() < 0.35
    if passive:
        verb = f"was {'not ' if negated else ''}{participle} by"
        core = f"{obj} {verb} {subject}"
    else:
        verb = rng.choice([f"did not {base}", f"never {past}"]) if negated else past
        core = f"{subject} {verb} {obj}"
    place = pick(rng, PLACES[ev["place"]], avoid.get("place")) if ev["place"] is not None else None
    time = pick(rng, TIMES[ev["time"]], avoid.get("time")) if ev["time"] is not None else None
    used["place"], used["time"] = place, time
    extras = [x for x in (place, time) if x]
    if time and rng.random() < 0.4:
        text = f"{time[0].upper()}{time[1:]}, {core}" + (f" {place}" if place else "")
    else:
        text = core[0].upper() + core[1:] + "".join(f" {x}" for x in extras)
    return text + ".", used


def pair(rng: random.Random) -> dict:
    a = event(rng)
    b = dict(a)
    differ = rng.choice([0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 5])  # how many parts change: a spread of scores
    for part in rng.sample(list(WEIGHTS), differ):
        if part in ("place", "time") and rng.random() < 0.3:
            b[part] = None if a[part] is not None else rng.randrange(len(PLACES if part == "place" else TIMES))
        else:
            b[part] = mutate(rng, part, a[part], lookalike=part in ("subject", "action", "object") and rng.random() < 0.55)
    s1, used = render(rng, a, {})
    s2, _ = render(rng, b, used if rng.random() < 0.85 else {})
    score = min(5.0, max(0.0, similarity(a, b) + rng.gauss(0, 0.15)))
    if rng.random() < 0.5:
        s1, s2 = s2, s1
    return {"sentence1": s1, "sentence2": s2, "score": round(score, 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "llmft" / "resources" / "sts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    seen: set = set()
    args.out.mkdir(parents=True, exist_ok=True)
    for split, size in SIZES.items():
        rows = []
        while len(rows) < size:
            row = pair(rng)
            key = (row["sentence1"].lower(), row["sentence2"].lower())
            if key not in seen and (key[1], key[0]) not in seen:
                seen.add(key)
                rows.append(row)
        (args.out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        print(f"{split}: {len(rows)} pairs")


if __name__ == "__main__":
    main()
