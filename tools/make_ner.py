"""Generate llmft's bundled synthetic English named-entity data set (CoNLL-2003's four types, IOB2 tags).

Writes train.jsonl (3000 sentences), validation.jsonl (500) and test.jsonl (1000), one
{"tokens": [...], "ner_tags": [...]} object per line (tags as strings: O, B-PER, I-PER, B-ORG, I-ORG, B-LOC, I-LOC,
B-MISC, I-MISC), into the ner/ folder under llmft/resources. Sentences are news-wire-like, composed from templates
and name lists. Context decides the type: the same word is a person, a place, a team (ORG) or part of an event
(MISC) depending on the sentence ("Jordan Smith said", "talks in Jordan", "Washington beat Dallas 3-1",
"the Sydney International"), so a per-word memorising tagger cannot solve it. A quarter of every name list is held
out of train and appears in validation/test only, and so are a quarter of the sentence templates and of the
predicates that tell a subject's kind. Every sentence is unique across the three splits. Same seed ->
byte-identical files.

Regenerate with:  python tools/make_ner.py [--out DIR] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SIZES = {"train": 3000, "validation": 500, "test": 1000}
HELD_OUT = 0.25  # share of each name list seen only in validation/test


def L(s: str) -> list[str]:
    return s.split("|")


# words that are several types: first names that are places, surnames that are places or companies, cities that are teams
FIRST = L(
    "James|Maria|David|Anna|Peter|Laura|Michael|Sofia|Thomas|Elena|Robert|Hannah|Carlos|Julia|Ahmed|Yuki|Daniel|"
    "Olga|Marco|Fatima|Lucas|Ingrid|Samuel|Chloe|Pavel|Grace|Omar|Nina|Felix|Rosa|Jordan|Austin|Sydney|Victoria|"
    "Florence|Georgia|Chelsea|Paris|Madison|Dallas|Lincoln|Adelaide|Israel|Brooklyn|Phoenix|Kent|Denver|Savannah"
)
LAST = L(
    "Smith|Garcia|Muller|Rossi|Tanaka|Kowalski|Johnson|Silva|Novak|Dubois|Khan|Larsen|Brown|Lopez|Ivanov|Murphy|"
    "Schmidt|Costa|Nakamura|Petrov|Jensen|Moreau|Fischer|Santos|Hughes|Weber|Okafor|Lindqvist|Haddad|Romano|"
    "Washington|Lincoln|Ford|Jordan|London|Kent|Chester|Madison|Houston|Sterling|Morgan|Denver|Cleveland|Orlando"
)
CITIES = L(
    "Paris|London|Berlin|Madrid|Rome|Tokyo|Moscow|Sydney|Washington|Dallas|Houston|Denver|Chicago|Boston|Milan|"
    "Lisbon|Vienna|Cairo|Lagos|Nairobi|Mumbai|Seoul|Dublin|Oslo|Prague|Warsaw|Athens|Florence|Victoria|Austin|"
    "Lincoln|Phoenix|Cleveland|Orlando|Madison|Adelaide|Chester|Kent|Brooklyn|Savannah|"
    "New York|Los Angeles|Hong Kong|Buenos Aires|Rio de Janeiro|San Francisco|Cape Town|Tel Aviv|New Delhi|St Louis"
)
COUNTRIES = L(
    "France|Germany|Spain|Italy|Japan|Russia|Brazil|Kenya|Egypt|India|China|Canada|Mexico|Poland|Greece|Norway|"
    "Jordan|Georgia|Israel|Chad|Turkey|Peru|Chile|Ireland|Portugal|Austria|Nigeria|Sweden|Iran|Cuba|"
    "South Africa|New Zealand|United States|Saudi Arabia|Sri Lanka|Costa Rica|Czech Republic|North Korea"
)
REGIONS = L(
    "Bavaria|Texas|Ohio|Siberia|Tuscany|Kent|Victoria|Georgia|Florida|Quebec|Punjab|Catalonia|"
    "West Bank|Gaza Strip|Middle East|Balkans|Amazon|Sahara|Alps|Rhine"
)
CLUBS = L(
    "Arsenal|Chelsea|Ajax|Juventus|Benfica|Celtic|Everton|Lazio|Feyenoord|Galatasaray|Boca Juniors|Real Madrid|"
    "Bayern Munich|Inter Milan|Paris Saint-Germain|Manchester United|Aston Villa|Dallas Cowboys|Chicago Bulls|"
    "Boston Celtics|Houston Rockets|Denver Broncos|Sydney FC|Orlando City"
)
COMPANIES = L(
    "Reuters|Ford|Apple|Amazon|Siemens|Toyota|Nokia|Shell|Boeing|Airbus|Unilever|Samsung|Nestle|Lufthansa|"
    "Morgan Stanley|Goldman Sachs|Deutsche Bank|Bank of England|General Motors|British Airways|Lincoln Electric|"
    "Georgia Power|Washington Post|Jordan Telecom|Victoria Mining|Phoenix Group|Sterling Bank|Chester Foods|"
    "United Nations|World Bank|European Commission|Red Cross|NATO|OPEC|IMF|FIFA|Interpol|Greenpeace"
)
NATIONALITIES = L(
    "French|German|Spanish|Italian|Japanese|Russian|Brazilian|Kenyan|Egyptian|Indian|Chinese|Canadian|"
    "Mexican|Polish|Greek|Norwegian|Jordanian|Georgian|Israeli|Turkish|Irish|Swedish|Nigerian|Australian|"
    "British|American|Dutch|Belgian|Danish|Swiss|South African|New Zealand|Saudi|Sri Lankan"
)
EVENTS = L(
    "World Cup|Olympic Games|Tour de France|Australian Open|Sydney International|Paris Masters|Madrid Open|"
    "Boston Marathon|London Marathon|Davis Cup|Ryder Cup|Champions League|Super Bowl|Wimbledon|Euro 2024|"
    "Dubai Desert Classic|Monaco Grand Prix|Washington Open|Dallas Open|Victoria Cup"
)
LANGUAGES = L("English|French|Arabic|Spanish|German|Russian|Japanese|Swahili|Portuguese|Hebrew")
DAYS = L("Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday")
MONTHS = L("January|February|March|April|May|June|July|August|September|October|November|December")
TITLES = L("Mr|Mrs|Ms|Dr|President|Minister|Senator|coach|judge|General")

# {SLOT} fills: PER (a person, first [+ last]), SURNAME (a person's surname alone), LOC (city, country or region), CITY,
# COUNTRY, TEAM (a team named by its city or club: ORG), ORG (a company or body), NAT (nationality: MISC), EVENT (MISC),
# LANG (language: MISC); NUM, SCORE, DAY, MONTH, YEAR, TITLE are plain words (O)
TEMPLATES = L(
    "{PER} said on {DAY} that the talks in {LOC} would resume next week .|"
    "{TEAM} beat {TEAM} {SCORE} on {DAY} .|"
    "{TEAM} {NUM} {TEAM} {NUM}|"
    "{TEAM} drew {SCORE} with {TEAM} in the {EVENT} .|"
    "{ORG} shares rose {NUM} percent after the company reported higher profits .|"
    "Police in {CITY} arrested {NUM} people , a spokesman for {ORG} said .|"
    "{NAT} Prime Minister {PER} arrived in {COUNTRY} on {DAY} for a {NUM}-day visit .|"
    "{PER} , who joined {ORG} in {YEAR} , will run its {CITY} office .|"
    "The {NAT} striker {PER} scored twice as {TEAM} won in {CITY} .|"
    "Rain delayed play in {CITY} , where {PER} leads the {EVENT} by {NUM} shots .|"
    "Analysts at {ORG} expect demand in {LOC} to slow this year .|"
    "{COUNTRY} and {COUNTRY} signed a trade agreement in {CITY} on {DAY} .|"
    "Speaking to {ORG} , {PER} denied the reports .|"
    "Officials said the floods had hit northern {LOC} hardest .|"
    '{PER} told reporters in {CITY} : " We are ready . "|'
    "{ORG} , based in {CITY} , employs {NUM} people in {COUNTRY} .|"
    "The {NAT} government has asked {ORG} to review the deal .|"
    "{PER} ( {COUNTRY} ) beat {PER} ( {COUNTRY} ) 6-{SET} 6-{SET}|"
    "{PER} won the {EVENT} for the {ORD} time .|"
    "Tickets for the {EVENT} go on sale in {MONTH} .|"
    "{TITLE} {SURNAME} said {ORG} would appeal the ruling .|"
    "{TITLE} {SURNAME} visited {LOC} on {DAY} .|"
    "{SURNAME} , {NUM} , has played for {TEAM} since {YEAR} .|"
    "Markets in {CITY} were closed for a holiday on {DAY} .|"
    "Shares closed lower on {DAY} as investors waited for new figures .|"
    "The index fell {NUM} points in thin trading .|"
    "Temperatures will rise above {NUM} degrees later this week .|"
    "{NAT} and {NAT} troops took part in the exercise near {LOC} .|"
    "She moved to {CITY} in {YEAR} to work for {ORG} .|"
    "A {NAT} court sentenced {PER} to {NUM} years in prison .|"
    "{ORG} said in a statement that it would cut {NUM} jobs in {LOC} .|"
    "{PER} , a {NAT} national , was held at the airport in {CITY} .|"
    "The film , shot in {LOC} , is in {LANG} with subtitles .|"
    "{SURNAME} scored in the {NUM}th minute to give {TEAM} the lead .|"
    "{PER} of {TEAM} was named player of the month .|"
    "{PER} flew to {COUNTRY} to meet {PER} , the head of {ORG} .|"
    "Fighting broke out again in {LOC} , the {NAT} army said .|"
    "{TEAM} coach {PER} said his side deserved to win .|"
    "The {EVENT} will be held in {CITY} in {YEAR} .|"
    "{SURNAME} told {ORG} he would not stand again .|"
    "He was born in {CITY} and studied in {CITY} .|"
    "{PER} and {PER} will share the prize .|"
    "Oil prices fell after {ORG} agreed to raise output .|"
    "{NAT} exports to {COUNTRY} rose {NUM} percent in {MONTH} .|"
    "The {TEAM} quarterback {PER} threw for {NUM} yards .|"
    "Nobody was hurt in the fire , police said .|"
    "The meeting ended without an agreement on {DAY} .|"
    "{CITY} , {COUNTRY} {DAY} ( {ORG} ) - {PER} resigned on {DAY} ."
)


# what a subject of each kind does: a quarter of each list is held out of train, so a tagger must know that an unseen
# "declared a state of emergency" is said of a place and an unseen "stepped down" of a person
PREDICATES = {
    "PER": L(
        "said he would resign|stepped down on Friday|was arrested at his home|denied the allegations|married in a "
        "private ceremony|was sworn in as mayor|apologised to the fans|was treated in hospital|told the court he was "
        "innocent|announced her retirement|thanked her supporters|testified before the committee|was named best "
        "actor|was released on bail|wept as the verdict was read|signed a new contract|underwent knee surgery|"
        "pleaded guilty to fraud|was elected party leader|celebrated his birthday|gave birth to twins|"
        "refused to answer questions|was knighted by the queen|won the gold medal|retired from tennis"
    ),
    "ORG": L(
        "reported a quarterly loss|cut its dividend|recalled thousands of cars|filed for bankruptcy|raised its "
        "profit forecast|agreed to buy a rival|was fined by regulators|listed its shares|hired a new chief executive|"
        "closed two factories|issued new bonds|lowered its prices|posted record sales|shed jobs|launched a new "
        "phone|missed earnings estimates|settled the lawsuit|expanded into Asia|raised interest rates|"
        "published its annual report|merged with a competitor|opened a new plant|approved the budget|suspended "
        "trading in the stock|warned of weaker demand"
    ),
    "TEAM": L(
        "beat the champions|lost at home|drew in the derby|won the title|were relegated|sacked their manager|"
        "signed a striker|came from behind to win|stayed top of the table|reached the final|were knocked out|"
        "extended their unbeaten run|clinched promotion|conceded a late goal|kept a clean sheet|lost on penalties|"
        "won the league|missed the playoffs|retired his jersey|traded their quarterback|hosted the semi-final|"
        "snapped a losing streak|fired their coach|won the series|were eliminated"
    ),
    "LOC": L(
        "declared a state of emergency|was hit by floods|held elections on Sunday|recorded its hottest summer|"
        "closed its borders|was shaken by an earthquake|imposed a curfew|saw heavy snowfall|suffered a drought|"
        "reopened its schools|raised its sales tax|hosted the summit|suffered power cuts|was covered in smoke|"
        "banned fireworks|welcomed record tourists|lifted the lockdown|built a new airport|voted for independence|"
        "reported its first case|ran out of water|cut taxes|expelled the diplomats|rebuilt the bridge|"
        "mourned the victims"
    ),
}
# subjects that could be any kind: a surname, a city, a country or a company name that is also something else
AMBIGUOUS = {
    "PER": L(
        "Jordan|Washington|Lincoln|Ford|Madison|Houston|Kent|Chester|Denver|Sterling|Morgan|London|"
        "Cleveland|Orlando|Sydney|Victoria|Florence|Georgia|Chelsea|Paris|Dallas|Austin|Phoenix|Israel"
    ),
    "LOC": L(
        "Jordan|Washington|Lincoln|Madison|Houston|Kent|Chester|Denver|London|Cleveland|Orlando|Sydney|"
        "Victoria|Florence|Georgia|Chelsea|Paris|Dallas|Austin|Phoenix|Israel|Amazon"
    ),
    "ORG": L(
        "Ford|Amazon|Shell|Apple|Lincoln|Sterling|Morgan|Phoenix|Victoria|Chester|Jordan|Georgia|Washington|Orlando|Chelsea"
    ),
    "TEAM": L(
        "Chelsea|Dallas|Houston|Denver|Washington|Orlando|Cleveland|Phoenix|Sydney|Madison|Paris|London|"
        "Lincoln|Florence|Austin|Jordan"
    ),
}
ADJUNCTS = L(
    "| on {DAY}| in {MONTH}| , {PER} said| , according to {ORG}| last week| , officials said| in {YEAR}|"
    " , {ORG} reported| after talks with {PER}"
)


def composed(rng: random.Random, pick, predicates: dict[str, list[str]]) -> list[tuple[str, str]]:
    """A subject of one kind, often a word that could be any kind, and what it did: only the predicate tells."""
    kind = rng.choice(["PER", "ORG", "TEAM", "LOC"])
    tag = {"PER": "PER", "ORG": "ORG", "TEAM": "ORG", "LOC": "LOC"}[kind]
    if rng.random() < 0.6:
        subject = entity(rng.choice(AMBIGUOUS[kind]), tag)
    else:
        subject = fill({"PER": "PER", "ORG": "ORG", "TEAM": "TEAM", "LOC": "LOC"}[kind], pick, rng)
    rest = (rng.choice(predicates[kind]) + rng.choice(ADJUNCTS) + " .").split()
    out = list(subject)
    for part in rest:
        if part.startswith("{"):
            out += fill(part.strip("{}"), pick, rng)
        else:
            out += plain(part)
    return out


def split_lists(rng: random.Random) -> dict[str, tuple[list[str], list[str]]]:
    """Each list cut into (seen in every split, held out of train)."""
    out = {}
    for name, items in (
        ("FIRST", FIRST),
        ("LAST", LAST),
        ("CITY", CITIES),
        ("COUNTRY", COUNTRIES),
        ("REGION", REGIONS),
        ("CLUB", CLUBS),
        ("ORG", COMPANIES),
        ("NAT", NATIONALITIES),
        ("EVENT", EVENTS),
    ):
        shuffled = sorted(items)
        rng.shuffle(shuffled)
        cut = int(len(shuffled) * HELD_OUT)
        out[name] = (shuffled[cut:], shuffled[:cut])
    return out


def entity(words: str, kind: str) -> list[tuple[str, str]]:
    tokens = words.split()
    return [(t, ("B-" if i == 0 else "I-") + kind) for i, t in enumerate(tokens)]


def plain(words: str) -> list[tuple[str, str]]:
    return [(t, "O") for t in words.split()]


def fill(slot: str, pick, rng: random.Random) -> list[tuple[str, str]]:
    """The tagged tokens of one slot; `pick(list_name)` draws from the split's share of a name list."""
    if slot == "PER":
        return entity(pick("FIRST") + ("" if rng.random() < 0.15 else " " + pick("LAST")), "PER")
    if slot == "SURNAME":
        return entity(pick("LAST"), "PER")
    if slot == "LOC":
        return entity(pick(rng.choice(["CITY", "COUNTRY", "REGION"])), "LOC")
    if slot in ("CITY", "COUNTRY"):
        return entity(pick(slot), "LOC")
    if slot == "TEAM":  # a team named by its city is an ORG, as in CoNLL-2003's sports results
        return entity(pick("CITY" if rng.random() < 0.6 else "CLUB"), "ORG")
    if slot in ("ORG", "NAT", "EVENT"):
        return entity(pick(slot), {"ORG": "ORG", "NAT": "MISC", "EVENT": "MISC"}[slot])
    if slot == "LANG":
        return entity(rng.choice(LANGUAGES), "MISC")
    words = {
        "NUM": str(rng.choice([rng.randint(2, 99), rng.randint(100, 5000)])),
        "SCORE": f"{rng.randint(0, 5)}-{rng.randint(0, 5)}",
        "DAY": rng.choice(DAYS),
        "MONTH": rng.choice(MONTHS),
        "YEAR": str(rng.randint(1975, 2024)),
        "TITLE": rng.choice(TITLES),
        "SET": str(rng.randint(0, 4)),
        "ORD": rng.choice(["second", "third", "fourth", "fifth"]),
    }
    return plain(words[slot])


def sentence(rng: random.Random, pick, templates: list[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for part in rng.choice(templates).split():
        prefix, _, rest = part.partition("{")
        if not rest:
            out += plain(part)
            continue
        slot, _, suffix = rest.partition("}")
        tagged = fill(slot, pick, rng)  # "{NUM}-day", "6-{SET}": the slot's word and the text around it are one token
        tagged[0] = (prefix + tagged[0][0], tagged[0][1])
        tagged[-1] = (tagged[-1][0] + suffix, tagged[-1][1])
        out += tagged
    out[0] = (out[0][0][:1].upper() + out[0][0][1:], out[0][1])  # "coach Kent ..." opens a sentence: "Coach"
    return out


def generate(seed: int) -> dict[str, list[dict[str, list[str]]]]:
    rng = random.Random(seed)
    lists = split_lists(rng)
    seen: set[tuple[str, ...]] = set()
    out = {}
    cut = {kind: sorted(items) for kind, items in PREDICATES.items()}
    for items in cut.values():
        rng.shuffle(items)
    templates_cut = list(TEMPLATES)  # a quarter of the sentence shapes are never seen in train either
    rng.shuffle(templates_cut)
    for split, size in SIZES.items():

        def pick(name: str, _held=split != "train") -> str:
            shared, held = lists[name]
            return rng.choice(shared + held if _held else shared)

        predicates = {k: v if split != "train" else v[int(len(v) * HELD_OUT) :] for k, v in cut.items()}
        templates = templates_cut if split != "train" else templates_cut[int(len(templates_cut) * HELD_OUT) :]
        rows = []
        while len(rows) < size:
            tagged = composed(rng, pick, predicates) if rng.random() < 0.4 else sentence(rng, pick, templates)
            key = tuple(t for t, _ in tagged)
            if key in seen:
                continue
            seen.add(key)
            rows.append({"tokens": [t for t, _ in tagged], "ner_tags": [g for _, g in tagged]})
        out[split] = rows
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "llmft" / "resources" / "ner")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for split, rows in generate(args.seed).items():
        with open(args.out / f"{split}.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        print(f"{split}: {len(rows)} sentences")


if __name__ == "__main__":
    main()
