"""Generate llmft's bundled synthetic data sets for generative tasks.

Writes train.jsonl / validation.jsonl / test.jsonl into six folders beside this script:
  sft/            {"prompt", "response"}: 2-digit addition/subtraction questions (3000/200/200)
  chat/           {"messages": [system, user, assistant, ...]}: the same arithmetic, ~30% two-turn (1000/100/100)
  textgen/        {"text"}: 2-4 sentence templated paragraphs about fictional towns (2000/200/200)
  summarization/  {"document", "summary"}: short reports, summary = the key event (2000/200/200)
  translation/    {"source", "target"}: English -> a toy word-for-word language, adjective after noun (3000/200/200)
  qa/             SQuAD-style extractive QA, ~10% unanswerable (2000/200/200)
No arithmetic problem of a validation/test split appears in any train split (a+b and b+a count as one
problem); every text, summary, source sentence and QA context is unique across its set's splits. Each set has
its own random stream (--sets X writes the same X as a full run). Same seed -> byte-identical files.
Data card: GENERATIVE_DATA.md.

Regenerate with:  python tools/make_generative.py [--out DIR] [--seed 0] [--sets sft chat ...]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SIZES = {
    "sft": (3000, 200, 200),
    "chat": (1000, 100, 100),
    "textgen": (2000, 200, 200),
    "summarization": (2000, 200, 200),
    "translation": (3000, 200, 200),
    "qa": (2000, 200, 200),
}
SPLITS = ("train", "validation", "test")
MULTI_TURN_RATE, UNANSWERABLE_RATE = 0.3, 0.1


def L(s: str) -> list[str]:
    return s.split("|")


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def an(w: str) -> str:
    return ("an " if w[0] in "aeiou" else "a ") + w


# ---------------------------------------------------------------- arithmetic (sft, chat)
ADD_Q = L(
    "What is {a} + {b}?|Add {a} and {b}.|Compute {a}+{b}|What is the sum of {a} and {b}?|"
    "Calculate {a} plus {b}.|{a} + {b} =|How much is {a} plus {b}?"
)
SUB_Q = L(
    "What is {a} - {b}?|Subtract {b} from {a}.|Compute {a}-{b}|What is the difference between {a} and {b}?|"
    "Calculate {a} minus {b}.|{a} - {b} =|How much is {a} minus {b}?"
)
FOLLOW = L("|And |Now |Next: |Also, ")
SYSTEM = "You are a calculator."


def problem_pools(seed: int) -> dict[str, list[tuple[int, int, str]]]:
    """Splits every 2-digit problem (a+b with a<=b; a-b with a>=b) into disjoint test/validation/train pools."""
    keys = [(a, b, "+") for a in range(10, 100) for b in range(a, 100)]
    keys += [(a, b, "-") for a in range(10, 100) for b in range(10, a + 1)]
    random.Random(f"arith-pools:{seed}").shuffle(keys)
    n_eval = SIZES["sft"][2]
    return {"test": keys[:n_eval], "validation": keys[n_eval : 2 * n_eval], "train": keys[2 * n_eval :]}


def ask(r: random.Random, key: tuple[int, int, str]) -> tuple[str, str]:
    a, b, op = key
    if op == "+":
        if r.random() < 0.5:
            a, b = b, a
        return r.choice(ADD_Q).format(a=a, b=b), str(a + b)
    return r.choice(SUB_Q).format(a=a, b=b), str(a - b)


def make_sft(r: random.Random, pool: list) -> dict:
    return dict(zip(("prompt", "response"), ask(r, pool.pop())))


def make_chat(r: random.Random, pool: list) -> dict:
    msgs = [{"role": "system", "content": SYSTEM}]
    for turn in range(2 if r.random() < MULTI_TURN_RATE else 1):
        q, ans = ask(r, pool.pop())
        pre = r.choice(FOLLOW) if turn else ""
        msgs += [
            {"role": "user", "content": pre + (q[0].lower() + q[1:] if pre and q[0].isalpha() else q)},
            {"role": "assistant", "content": ans},
        ]
    return {"messages": msgs}


# ---------------------------------------------------------------- shared fictional world
TOWNS = [
    cap(p + s)
    for p in L("ash|bel|cor|dun|el|fen|gar|hol|kel|lin|mor|nor|os|pel|ros|sel|tor|ul|ver|wen|yar|zan")
    for s in L("ford|bury|wick|ton|mere|dale|stead|holm|field|brook|haven|moor|gate|ley|port")
]
RIVERS = [
    "the " + x + " river"
    for x in L(
        "Ambra|Lune|Teska|Orrin|Vell|Sorra|Kessel|Mira|Dane|Ystra|Fallow|Corran|Ilse|Broda|Nenna|Tarrow|Ulla|Wend|Esk|Haver"
    )
]
FIRST = L(
    "Ana|Bram|Cora|Dev|Elin|Farid|Greta|Hugo|Ines|Jonas|Kira|Leon|Mira|Nils|Olga|Pavel|Rosa|Sami|Tessa|Umar|"
    "Vera|Wim|Yara|Zeno|Alba|Bodil|Cyrus|Dalia|Emil|Freya|Goran|Hana|Ivo|Juna|Karim|Lotte|Milo|Nadia|Oskar|Petra"
)
LAST = L(
    "Kole|Marsh|Vance|Holt|Brenn|Castell|Dorn|Ekland|Fenn|Garrow|Hale|Ivers|Joss|Kestrel|Lomax|Mercer|Norcott|"
    "Penhal|Quill|Rook|Sable|Thorne|Underhill|Vail|Wrenfield|Yates|Ambler|Birch|Crane|Dunmore"
)
REGIONS = L(
    "the Vell valley|the northern hills|the west country|the Orrin plain|the high moors|the lake country|"
    "the eastern marshes|the red hills|the Sorra basin"
)
TRADES = L(
    "fishing|farming|weaving|mining|pottery|shipbuilding|brewing|timber|sheep farming|glassmaking|cheese making|salt making"
)
LANDMARKS = L(
    "old stone bridge|clock tower|market square|lighthouse|ruined castle|covered market|windmill|"
    "town library|harbour wall|bell tower|rose garden|stone circle"
)
FESTIVALS = L("lantern|harvest|boat|music|cheese|kite|apple|river|flower|winter fire")
SEASONS = L("spring|summer|autumn|winter")


# ---------------------------------------------------------------- textgen
TOWN_FACTS = L(
    "It lies on {river}, {miles} miles {dir} of {town2}.|About {pop} people live there.|"
    "Most of its people work in {trade}.|The town is known for its {landmark}.|"
    "Every {season}, {town} holds {festival} festival."
)


def make_text(r: random.Random) -> dict:
    town = r.choice(TOWNS)
    v = dict(
        town=town,
        river=r.choice(RIVERS),
        miles=r.randint(3, 60),
        dir=r.choice(L("north|south|east|west")),
        town2=r.choice([t for t in TOWNS if t != town]),
        pop=f"{r.randint(2, 95) * 100:,}",
        trade=r.choice(TRADES),
        landmark=r.choice(LANDMARKS),
        season=r.choice(SEASONS),
        festival=an(r.choice(FESTIVALS)),
    )
    first = f"{town} is {an(r.choice(L('small|quiet|busy|old|large|pretty')))} town in {r.choice(REGIONS)}."
    picked = sorted(r.sample(range(len(TOWN_FACTS)), r.randint(1, 3)))
    return {"text": " ".join([first] + [TOWN_FACTS[i].format(**v) for i in picked])}


# ---------------------------------------------------------------- summarization
ROLES = L("Mayor|Doctor|Professor|Captain|Judge|Councillor|Inspector|Chef|Coach|Director")
EVENTS = L(
    "opened a new library|won the regional chess final|signed a water agreement|announced a new bus line|"
    "closed the old fish market|launched a recycling program|unveiled a bronze statue|reopened the main bridge|"
    "planted two hundred trees|rescued a stranded fishing boat|raised funds for a new hospital|"
    "broke the town swimming record|found a buried silver coin|opened a night school|cancelled the spring fair|"
    "painted the harbour wall|started a free lunch program|repaired the flood barrier|"
    "welcomed a visiting orchestra|named a new head teacher"
)
DAYS = L("Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday")
KEY_TPL = L(
    "{who} {what} in {where} on {day}.|On {day}, {who} {what} in {where}.|In {where}, {who} {what} on {day}.|"
    "{who} {what} in {where} on {day}, officials said."
)
INTRO = L(
    "It was a {weather} {day} in {where}.|Crowds gathered early in the centre of {where}.|"
    "News spread quickly across {where} on {day}."
)
FILLER = L(
    "The weather was {weather} for the time of year.|Local shops reported a busy {part}.|"
    "Traffic on the {road} road was slower than usual.|A spokesperson said more details would follow.|"
    "Residents gathered to watch.|The event lasted about {hours} hours.|{last} thanked the volunteers who helped.|"
    "Several families travelled from {other} to attend.|Photographs were shared widely online.|"
    "It was the first such event in {where} since {year}.|Some critics called the plan too expensive.|"
    "The local newspaper covered the story.|Schools in {other} closed early that day."
)


def make_report(r: random.Random) -> dict:
    first, last, where = r.choice(FIRST), r.choice(LAST), r.choice(TOWNS)
    v = dict(
        who=f"{r.choice(ROLES)} {first} {last}",
        what=r.choice(EVENTS),
        where=where,
        day=r.choice(DAYS),
        last=last,
        other=r.choice([t for t in TOWNS if t != where]),
        year=r.randint(1950, 2015),
        weather=r.choice(L("mild|cold|warm|wet|windy|bright")),
        part=r.choice(L("morning|afternoon|evening")),
        road=r.choice(L("coast|river|market|north|mill")),
        hours=r.randint(2, 6),
    )
    sents = ([r.choice(INTRO)] if r.random() < 0.35 else []) + [r.choice(KEY_TPL)]  # 3-5 sentences in all
    sents += r.sample(FILLER, r.randint(3, 5) - len(sents))
    return {"document": " ".join(cap(s.format(**v)) for s in sents), "summary": "{who} {what} in {where}.".format(**v)}


# ---------------------------------------------------------------- translation
NOUNS = L(
    "dog|cat|bird|horse|fish|cow|child|farmer|teacher|doctor|king|queen|soldier|sailor|baker|girl|boy|woman|"
    "man|friend|house|river|tree|garden|boat|road|city|village|mountain|forest|field|table|door|window|book|"
    "letter|song|bread|apple|cup|ship|bridge|lamp|stone|flower|wall|key|market|mouse|wolf|fox|goat|sheep|owl|"
    "shop|school|castle|hill|lake|island"
)
ANIMATE = NOUNS[:20] + L("mouse|wolf|fox|goat|sheep|owl")
ADJS = L(
    "big|small|old|young|red|blue|green|black|white|happy|sad|tall|short|quiet|loud|fast|slow|brave|kind|"
    "clever|tired|hungry|warm|cold|bright|dark|heavy|rich|poor|strange"
)
VT = L(
    "saw|found|liked|carried|painted|opened|closed|built|watched|followed|helped|called|cleaned|sold|bought|"
    "wanted|held|pushed|pulled|visited|counted|washed|cooked|read|ate"
)
VI = L("slept|ran|laughed|sang|danced|waited|fell|swam|cried|walked")
PREPS, ADVS = L("near|under|behind|in|on|with|from|beside"), L("quickly|slowly|today|yesterday|again|often|happily|quietly")
DETS, PRONS, OTHER = L("the|a|this|every"), L("he|she|we|they"), L("was|were")
VOCAB = DETS + NOUNS + ADJS + VT + VI + PREPS + ADVS + PRONS + OTHER


def make_lexicon() -> dict[str, str]:
    """English word -> toy word. Fixed (own seed), so every --seed gives the same toy language."""
    r, lex = random.Random("llmft-toy-lexicon-v1"), {}
    for w in VOCAB:
        t = w
        while t in VOCAB or t in lex.values():  # CV syllables, maybe a final consonant; distinct, never English
            t = "".join(r.choice("bdfgklmnprstvz") + r.choice("aeiou") for _ in range(r.randint(1, 3)))
            t += r.choice(["", "", "n", "r", "s"])
        lex[w] = t
    return lex


LEXICON = make_lexicon()


def np_(r: random.Random, nouns: list[str], adj_p: float = 0.5) -> tuple[list[str], list[str]]:
    """A noun phrase as (English words, toy-order words): DET [ADJ] NOUN -> DET NOUN [ADJ]."""
    det, noun = r.choice(DETS), r.choice(nouns)
    adj = [r.choice(ADJS)] if r.random() < adj_p else []
    det = "an" if det == "a" and (adj or [noun])[0][0] in "aeiou" else det
    return [det] + adj + [noun], ["a" if det == "an" else det, noun] + adj


def make_pair(r: random.Random) -> dict:
    subj = ([r.choice(PRONS)],) * 2 if r.random() < 0.2 else np_(r, ANIMATE)
    k = r.random()
    if k < 0.5:
        parts = [subj, ([r.choice(VT)],) * 2, np_(r, NOUNS)]
    elif k < 0.8:
        parts = [subj, ([r.choice(VI)],) * 2]
    else:
        adj = r.choice(ADJS)
        parts = [subj, (["were" if subj[0][0] in ("we", "they") else "was", adj],) * 2]
    if k < 0.8 and r.random() < 0.4:
        parts += [([r.choice(PREPS)],) * 2, np_(r, NOUNS, 0.3)]
    if r.random() < 0.25:
        parts.append(([r.choice(ADVS)],) * 2)
    return {
        "source": cap(" ".join(w for p in parts for w in p[0])) + ".",
        "target": cap(" ".join(LEXICON[w] for p in parts for w in p[1])) + ".",
    }


# ---------------------------------------------------------------- qa
JOBS = L("baker|teacher|doctor|carpenter|fisher|librarian|engineer|painter|nurse|tailor|architect|boat builder")
ORGS = L(
    "Rowing Club|Music School|Weaving Company|Chess Society|Public Library|Ferry Company|Botanical Garden|"
    "Bakery|Theatre|Bicycle Works"
)
HOBBIES = L("sailing|painting|chess|gardening|birdwatching|swimming|woodcarving|hiking|singing|fishing")
# (template, [(question, answer slot)]) in the order the sentences appear in a context.
QA_FACTS = [
    (
        "{name} was born in {p1} in {y1}.",
        [("Where was {name} born?", "p1"), ("When was {name} born?", "y1"), ("In what year was {name} born?", "y1")],
    ),
    ("{p1} is {size} town on {river}.", [("What river is {p1} on?", "river"), ("Which river flows past {p1}?", "river")]),
    ("{name} works as {art} {job} in {p2}.", [("What is {name}'s job?", "job"), ("Where does {name} work?", "p2")]),
    (
        "In {y2}, {name} founded {org}.",
        [("Who founded {org}?", "name"), ("When was {org} founded?", "y2"), ("What did {name} found in {y2}?", "org")],
    ),
    ("{name}'s {rel}, {name2}, lives in {p3}.", [("Who is {name}'s {rel}?", "name2"), ("Where does {name2} live?", "p3")]),
    ("On weekends, {name} enjoys {hobby}.", [("What does {name} enjoy on weekends?", "hobby")]),
]


def make_qa(r: random.Random) -> dict:
    name = f"{r.choice(FIRST)} {r.choice(LAST)}"
    p1, p2, p3, p4 = r.sample(TOWNS, 4)
    job, y1 = r.choice(JOBS), r.randint(1900, 1990)
    v = dict(
        name=name,
        p1=p1,
        p2=p2,
        p3=p3,
        y1=str(y1),
        y2=str(y1 + r.randint(20, 45)),
        job=job,
        art=an(job).split()[0],
        size=an(r.choice(L("small|quiet|busy|old|large"))),
        river=r.choice(RIVERS),
        org=f"the {p4} {r.choice(ORGS)}",
        rel=r.choice(L("sister|brother|cousin")),
        name2=name,
        hobby=r.choice(HOBBIES),
    )
    while v["name2"] == name:
        v["name2"] = f"{r.choice(FIRST)} {r.choice(LAST)}"
    chosen = sorted(r.sample(range(len(QA_FACTS)), r.randint(2, 5)))
    sents, starts, pos = [], {}, 0
    for i in chosen:
        tpl = QA_FACTS[i][0]
        s = cap(tpl.format(**v))
        for slot in L("name|p1|p2|p3|y1|y2|job|org|river|name2|hobby"):
            if "{" + slot + "}" in tpl:  # offset of the slot = length of the formatted text before it
                starts[(i, slot)] = pos + len(cap(tpl[: tpl.index("{" + slot + "}")].format(**v)))
        sents.append(s)
        pos += len(s) + 1
    context = " ".join(sents)
    if r.random() < UNANSWERABLE_RATE:  # ask about a fact that no sentence of the context states
        q_tpl, _ = r.choice(QA_FACTS[r.choice([i for i in range(len(QA_FACTS)) if i not in chosen])][1])
        return {"context": context, "question": q_tpl.format(**v), "answers": {"text": [], "answer_start": []}}
    i = r.choice(chosen)
    q_tpl, slot = r.choice(QA_FACTS[i][1])
    text, start = v[slot], starts[(i, slot)]
    assert context[start : start + len(text)] == text, (context, text, start)
    return {"context": context, "question": q_tpl.format(**v), "answers": {"text": [text], "answer_start": [start]}}


# set -> (row maker, the field that must be unique across the set's splits; None: draw from the problem pools)
MAKERS = {
    "sft": (make_sft, None),
    "chat": (make_chat, None),
    "textgen": (make_text, "text"),
    "summarization": (make_report, "summary"),
    "translation": (make_pair, "source"),
    "qa": (make_qa, "context"),
}


def generate(name: str, seed: int = 0) -> dict[str, list[dict]]:
    """Rows of one set per split. Arithmetic rows draw from their split's pool (sft: without replacement);
    the others are drawn until enough distinct ones exist, then cut into train/validation/test in order."""
    r, (make, field), sizes = random.Random(f"{name}:{seed}"), MAKERS[name], SIZES[name]
    if field is None:
        pools = problem_pools(seed)
        return {s: [make(r, pools[s]) for _ in range(n)] for s, n in zip(SPLITS, sizes)}
    seen, rows = set(), []
    while len(rows) < sum(sizes):
        row = make(r)
        if row[field] not in seen:
            seen.add(row[field])
            rows.append(row)
    out, start = {}, 0
    for split, n in zip(SPLITS, sizes):
        out[split], start = rows[start : start + n], start + n
    if name == "qa":
        out = {s: [{"id": f"{s}-{i:05d}", **row} for i, row in enumerate(rows)] for s, rows in out.items()}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "llmft" / "resources",
        help="parent folder; each set goes into OUT/<set>/ (default: beside this script)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sets", nargs="+", choices=list(MAKERS), default=list(MAKERS))
    args = ap.parse_args(argv)
    for name in args.sets:
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        for split, rows in generate(name, args.seed).items():
            with open(folder / f"{split}.jsonl", "w", encoding="ascii", newline="\n") as f:
                f.writelines(json.dumps(row, ensure_ascii=True) + "\n" for row in rows)
            print(f"wrote {len(rows)} rows to {folder / (split + '.jsonl')}")


if __name__ == "__main__":
    main()
