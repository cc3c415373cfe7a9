"""Generate llmft's bundled synthetic multiple-choice set (SWAG's layout: sent1, sent2, ending0..3, label).

Each scenario has two contexts that differ in a few words ("left her umbrella at home" / "had brought her umbrella")
and lead to opposite outcomes, each told several ways. An item is one context, its outcome (the answer), the other
context's outcome (a distractor only the meaning rules out), and two look-alike endings that reuse the context's
words but do not follow from it. The answer avoids the context's words, so ranking endings by word overlap with the
context picks a look-alike; ending lengths vary, so "the longest ending" does not solve it either.
Writes train.jsonl (2000 items), validation.jsonl (300), test.jsonl (600). Same seed -> byte-identical files.

Regenerate with:  python tools/make_mc.py [--out DIR] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SIZES = {"train": 2000, "validation": 300, "test": 600}
NAMES = {
    "she": ["Maria", "Aisha", "Lena", "Priya", "Sofia", "Hannah", "Mei", "Chloe", "Fatima", "Olga"],
    "he": ["Tom", "Ahmed", "Lukas", "Ravi", "Diego", "Kenji", "Omar", "Peter", "Jonas", "Samuel"],
}
# (context A, context B, outcomes of A, outcomes of B, look-alikes that follow from neither);
# {n} name, {p} he/she, {o} him/her, {s} his/her
SCENARIOS = [
    (
        "{n} left {s} umbrella at home, and then the rain started.",
        "{n} had brought {s} umbrella along when the rain started.",
        ["got completely soaked on the walk back.", "arrived at work dripping wet.", "had to dry off before the meeting began."],
        [
            "stayed perfectly dry on the walk back.",
            "reached the office without a wet thread.",
            "strolled on calmly through the downpour.",
        ],
        [
            "left the rain at home and started the umbrella.",
            "brought the rain along to the umbrella shop at home.",
            "started to rain on {s} umbrella at home.",
        ],
    ),
    (
        "{n} forgot to set an alarm the night before the exam.",
        "{n} set two alarms the night before the exam.",
        [
            "overslept and missed the first half of the test.",
            "woke up in a panic long after sunrise.",
            "rushed in late, still half asleep.",
        ],
        [
            "woke up early and reviewed {s} notes over breakfast.",
            "was first to arrive at the hall, well rested.",
            "got up on time and walked over calmly.",
        ],
        [
            "set the exam to forget the night before.",
            "forgot the night and set the alarm on the exam.",
            "took the alarm to the exam the night before.",
        ],
    ),
    (
        "{n} watered the tomato plants every day all summer.",
        "{n} never watered the tomato plants all summer.",
        [
            "picked baskets of ripe fruit in August.",
            "had more harvest than the family could eat.",
            "gave bags of produce to the neighbours.",
        ],
        [
            "found only dry, brown stalks in August.",
            "ended the season without a single ripe fruit.",
            "pulled up the withered remains in the autumn.",
        ],
        [
            "watered the summer every day with tomato plants.",
            "planted the summer in the tomato plants every day.",
            "spent every summer day talking to the tomato plants.",
        ],
    ),
    (
        "{n} saved part of {s} salary every month for years.",
        "{n} spent {s} whole salary every month for years.",
        [
            "could finally afford a deposit on a flat.",
            "had a comfortable cushion when the car broke down.",
            "paid for the trip in cash without worry.",
        ],
        [
            "had nothing put aside when the car broke down.",
            "needed a loan to fix the broken boiler.",
            "could not cover the deposit on a flat.",
        ],
        [
            "saved every month of {s} salary for part of the years.",
            "counted the months of {s} salary for years.",
            "spent years writing about salary every month.",
        ],
    ),
    (
        "{n} practised the piano for hours before the recital.",
        "{n} skipped every piano lesson before the recital.",
        [
            "played the sonata flawlessly and got a standing ovation.",
            "performed confidently and the audience cheered.",
            "received warm praise from the teacher afterwards.",
        ],
        [
            "stumbled through the first bars and stopped.",
            "hit so many wrong notes that the audience winced.",
            "froze on stage and left early, embarrassed.",
        ],
        [
            "practised the recital for hours before the piano.",
            "skipped the hours and practised the piano recital.",
            "moved the piano before the recital for hours.",
        ],
    ),
    (
        "The lake froze solid during the long cold week, so {n}",
        "The lake stayed liquid during the mild week, so {n}",
        [
            "went skating across it with friends.",
            "walked out onto the ice to fish through a hole.",
            "laced up {s} skates for an afternoon on the ice.",
        ],
        ["rented a rowing boat for the afternoon.", "went for a swim near the shore.", "paddled a canoe to the little island."],
        [
            "froze the long lake during the cold week.",
            "stayed solid and cold all week at the lake.",
            "spent a long cold week drawing the lake.",
        ],
    ),
    (
        "{n} ate a huge lunch just before the dinner party.",
        "{n} skipped lunch on the day of the dinner party.",
        ["could barely touch the food on {s} plate.", "politely declined a second helping.", "left most of the meal untouched."],
        [
            "devoured everything on {s} plate and asked for more.",
            "was starving by the time the soup arrived.",
            "went back for a third helping of dessert.",
        ],
        [
            "ate the dinner party before a huge lunch.",
            "threw a huge lunch party just before dinner.",
            "skipped the party to eat lunch at dinner.",
        ],
    ),
    (
        "{n} charged {s} phone overnight before the hike.",
        "{n} forgot to charge {s} phone before the hike.",
        [
            "used the map app all day and called home at the summit.",
            "took dozens of photos along the trail.",
            "checked the route whenever the path forked.",
        ],
        [
            "had a dead screen by noon and got lost at a fork.",
            "could not call anyone when the path split.",
            "relied on a paper map once the battery died.",
        ],
        [
            "charged the hike overnight with {s} phone.",
            "forgot the hike and charged the phone before it.",
            "phoned the hike overnight to charge it.",
        ],
    ),
    (
        "{n} locked the bike to a post outside the shop.",
        "{n} left the bike unlocked outside the shop.",
        [
            "found it exactly where it had been an hour later.",
            "rode home as usual after buying groceries.",
            "came back to an untouched ride.",
        ],
        [
            "came out to find it had been stolen.",
            "had to walk home after someone took it.",
            "reported the theft to the police that evening.",
        ],
        [
            "locked the shop to a post outside the bike.",
            "left the shop outside and locked the post.",
            "posted the bike lock to the shop outside.",
        ],
    ),
    (
        "{n} studied the contract carefully before signing it.",
        "{n} signed the contract without reading a word of it.",
        [
            "spotted a hidden fee and negotiated it away.",
            "knew exactly what the deal required.",
            "was never surprised by any of the terms.",
        ],
        [
            "was shocked later by a hidden fee.",
            "discovered too late that the deal locked {o} in for years.",
            "ended up paying penalties nobody had mentioned.",
        ],
        [
            "signed the studying and read the contract carefully.",
            "read the word contract without signing.",
            "carefully signed a contract to study words.",
        ],
    ),
    (
        "{n} put on sunscreen before the long day at the beach.",
        "{n} went without sunscreen for the long day at the beach.",
        [
            "came home without the slightest burn.",
            "felt fine the next morning, skin unharmed.",
            "enjoyed the evening with no sore shoulders.",
        ],
        [
            "woke up the next morning red and peeling.",
            "could not bear a shirt on {s} shoulders that night.",
            "spent the evening covered in cooling lotion.",
        ],
        [
            "put the beach on before the long sunscreen day.",
            "spent a long day selling sunscreen at the beach.",
            "went to the beach without a long day.",
        ],
    ),
    (
        "{n} booked the train tickets months in advance.",
        "{n} waited until the morning of the trip to buy train tickets.",
        [
            "paid a fraction of the usual fare and had a seat by the window.",
            "got cheap seats together with {s} friends.",
            "travelled comfortably in a reserved seat.",
        ],
        [
            "found the train sold out and had to take a slow bus.",
            "paid a fortune for the last standing ticket.",
            "stood in the corridor for the whole journey.",
        ],
        [
            "booked months of trains in advance of the tickets.",
            "waited at the train for months to book tickets.",
            "ticketed the morning trip in advance.",
        ],
    ),
    (
        "{n} closed the window before the storm arrived.",
        "{n} left the window wide open when the storm arrived.",
        [
            "woke up to a dry, quiet bedroom.",
            "slept through the night undisturbed.",
            "found everything in the room exactly in place.",
        ],
        [
            "found the carpet soaked and papers scattered everywhere.",
            "spent the morning mopping up puddles.",
            "had to dry out the wet curtains and books.",
        ],
        [
            "closed the storm before the window arrived.",
            "left the storm wide open by the window.",
            "opened the window to watch the storm arrive.",
        ],
    ),
    (
        "{n} fed the neighbour's cat while they were away.",
        "{n} forgot all about the neighbour's cat while they were away.",
        [
            "was thanked with a box of chocolates on their return.",
            "found the animal purring and content each evening.",
            "received a grateful postcard from their holiday.",
        ],
        [
            "faced an angry neighbour and a hungry animal.",
            "heard desperate meowing through the wall.",
            "had to apologise when the family came back.",
        ],
        [
            "fed the away neighbours to the cat.",
            "was away while the cat fed the neighbour.",
            "forgot the way to the neighbour's cat.",
        ],
    ),
    (
        "{n} trained for the marathon every morning for six months.",
        "{n} signed up for the marathon but never trained.",
        [
            "crossed the finish line in under four hours.",
            "ran the whole course at a steady pace.",
            "finished strongly and beat {s} target time.",
        ],
        [
            "had to drop out exhausted after ten kilometres.",
            "limped to a first-aid tent halfway through.",
            "walked most of the course in pain.",
        ],
        [
            "trained six months every morning for the marathon sign.",
            "signed the marathon every morning for six months.",
            "never trained the marathon to sign up.",
        ],
    ),
    (
        "{n} added far too much salt to the soup.",
        "{n} seasoned the soup with just a pinch of salt.",
        [
            "watched {s} guests reach for glasses of water.",
            "had to pour it away and start over.",
            "saw everyone push their bowls aside.",
        ],
        [
            "received compliments and requests for the recipe.",
            "served second helpings to every guest.",
            "watched the bowls empty in minutes.",
        ],
        ["added soup to far too much salt.", "seasoned the salt with a pinch of soup.", "salted far too much of the pinch."],
    ),
]


def fill(text: str, name: str, pron: str) -> str:
    return text.format(n=name, p=pron, o="her" if pron == "she" else "him", s="her" if pron == "she" else "his")


def item(rng: random.Random) -> dict:
    a_ctx, b_ctx, a_out, b_out, lures = rng.choice(SCENARIOS)
    if rng.random() < 0.5:
        context, right, wrong = a_ctx, a_out, b_out
    else:
        context, right, wrong = b_ctx, b_out, a_out
    pron = rng.choice(["she", "he"])
    name = rng.choice(NAMES[pron])
    sent1 = fill(context, name, pron)
    if sent1.endswith(name):  # "..., so Maria": the ending continues the sentence
        sent1, sent2 = sent1[: -len(name)].rstrip(), name
    else:
        sent2 = rng.choice([pron.capitalize(), name])
    endings = [
        fill(rng.choice(right), name, pron),
        fill(rng.choice(wrong), name, pron),
        *[fill(x, name, pron) for x in rng.sample(lures, 2)],
    ]
    order = list(range(4))
    rng.shuffle(order)
    row = {"sent1": sent1, "sent2": sent2}
    row.update({f"ending{i}": endings[j] for i, j in enumerate(order)})
    row["label"] = order.index(0)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent.parent / "llmft" / "resources" / "multiple-choice"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    seen: set = set()
    args.out.mkdir(parents=True, exist_ok=True)
    for split, size in SIZES.items():
        rows = []
        while len(rows) < size:
            row = item(rng)
            key = json.dumps(row, sort_keys=True)
            if key not in seen:
                seen.add(key)
                rows.append(row)
        (args.out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        print(f"{split}: {len(rows)} items")


if __name__ == "__main__":
    main()
