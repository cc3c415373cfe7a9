"""Generate llmft's bundled synthetic English sentiment data set.

Writes train.jsonl (3000 rows), validation.jsonl (500) and test.jsonl (1000),
one {"text": ..., "label": "negative"|"positive"} object per line, into the
sentiment/ folder beside this script. Texts are short reviews of products,
movies, shows, restaurants, hotels, apps, books and games, composed from
templates with negation, contrast clauses (the label follows the main/final
clause), comparisons, questions, recommendations and idioms. Every text is
unique across the three splits. About 3% of the rows of every split get the
flipped label on purpose (label noise). Same seed -> byte-identical files.

Regenerate with:  python tools/make_sentiment.py [--out DIR] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SIZES = {"train": 3000, "validation": 500, "test": 1000}
NOISE_RATE = 0.03
LABELS = ("negative", "positive")


def L(s: str) -> list[str]:
    return s.split("|")


# Generic vocabulary; pairs are indexed by polarity (0 = negative, 1 = positive).
ADJ_STRONG = (
    L(
        "awful|terrible|horrible|dreadful|atrocious|abysmal|appalling|disastrous|unbearable|dismal|pathetic|useless|"
        "worthless|horrendous|painful|miserable|infuriating|insufferable|shoddy|lousy|pitiful|unacceptable|embarrassing|dire"
    ),
    L(
        "amazing|fantastic|superb|outstanding|excellent|brilliant|wonderful|incredible|phenomenal|stellar|flawless|"
        "exceptional|terrific|magnificent|marvelous|spectacular|fabulous|first-rate|top-notch|sublime|exquisite|stunning|"
        "delightful|remarkable"
    ),
)
ADJ_MILD = (
    L(
        "disappointing|mediocre|bland|dull|weak|flimsy|underwhelming|forgettable|sloppy|clumsy|tedious|lackluster|"
        "frustrating|annoying|overpriced|subpar|poor|bad|clunky|sluggish|uninspired|tiresome|messy|flat|stale|so-so|"
        "lukewarm|unreliable|confusing|irritating|boring|uncomfortable"
    ),
    L(
        "good|nice|decent|solid|pleasant|enjoyable|fine|lovely|great|charming|impressive|satisfying|reliable|comfortable|"
        "likable|fun|polished|refreshing|smooth|clever|neat|engaging|thoughtful|sharp|well done|memorable|generous|"
        "dependable|intuitive|elegant"
    ),
)
INT_STRONG = L("absolutely|truly|simply|utterly|just|honestly|||")
INT_MILD = (
    L("really|very|pretty|quite|a bit|somewhat|rather|a little|kind of|slightly|extremely|so|||"),
    L("really|very|pretty|quite|fairly|rather|surprisingly|incredibly|extremely|remarkably|so|||"),
)
NOUNS = (
    L(
        "a letdown|a disaster|a mess|a joke|a nightmare|a chore|a rip-off|a total failure|a waste of money|"
        "a waste of time|a dealbreaker|the worst part|a sore point|a trainwreck|a headache|a huge disappointment"
    ),
    L(
        "a real gem|a treat|a delight|a joy|a highlight|a pleasant surprise|a triumph|a winner|a steal|a revelation|"
        "the best part|a breath of fresh air|a home run|a game changer|a masterpiece|a dream"
    ),
)
PAST_VERBS = (
    L(
        "hated|disliked|couldn't stand|was let down by|was disappointed by|was annoyed by|regretted paying for|"
        "was frustrated by|got fed up with|was put off by|was unimpressed by|was appalled by|was bored by"
    ),
    L(
        "loved|adored|really enjoyed|enjoyed|liked|was impressed by|was blown away by|fell in love with|was won over by|"
        "appreciated|was delighted with|was thrilled with|was charmed by"
    ),
)
BASE_VERBS = (L("hate|mind|dislike"), L("love|like|enjoy|care for"))  # only used under negation
CANT_SAY = (L("hated|disliked|minded|regretted"), L("loved|enjoyed|liked|was impressed by"))
NEGATABLE = (
    L(
        "bad|terrible|awful|disappointing|a letdown|boring|a problem|overpriced|a waste of time|unpleasant|annoying|dull|"
        "a dealbreaker|as bad as people say|an issue|a chore"
    ),
    L(
        "great|good|impressive|special|memorable|worth it|that good|what I hoped for|up to par|worth the money|"
        "as good as advertised|much fun|enjoyable|pleasant|reliable|exciting|all that great|anything special"
    ),
)
NOT_TAIL = (
    L("by any stretch|by any means|if I'm honest|, sadly|, unfortunately|||"),
    L("at all|in the slightest|by any means|one bit|at all, honestly|at all|"),
)
IDIOMS = (
    L(
        "{a} could have been much better|{a} left a lot to be desired|{a} {be} nothing special|{a} fell flat|"
        "{a} {be} not worth the money|{a} missed the mark|{a} let me down|{a} {be} a huge letdown|{a} {be} a step backwards|"
        "{a} made me want to scream|{a} {be} nothing to write home about|{a} gave me a headache"
    ),
    L(
        "{a} couldn't have been better|{a} left nothing to be desired|{a} {be} nothing short of {S}|{a} exceeded my expectations|"
        "{a} {be} worth every penny|{a} won me over|{a} blew me away|{a} really delivered|{a} {be} a cut above the rest|"
        "{a} put a smile on my face|{a} {be} nothing to complain about|{a} hit the spot"
    ),
)
VERDICTS = (
    L(
        "I hated it|I want my money back|what a waste of money|I regret the day I {did}|it fell completely flat|"
        "it was a huge letdown|I couldn't be more disappointed|I wouldn't recommend it|avoid at all costs|"
        "do yourself a favor and skip it|never again|one star, and that's generous|it's not worth the hype|"
        "I wish I had never {pp}|it's the worst {kind} I've ever {ever}|save your money|don't bother|I won't {again}|"
        "you couldn't pay me to {again}|I wouldn't recommend it to my worst enemy|I'd think twice before trying it|"
        "it's a hard pass from me|I can't recommend it|it was a total waste of time|stay away|I'm done with it"
    ),
    L(
        "I loved it|it was worth every penny|I'm glad I {did}|it exceeded my expectations|I couldn't be happier|"
        "I have no complaints|it was money well spent|it made my day|it's a keeper|I can't recommend it enough|"
        "I'd recommend it to anyone|highly recommended|five stars from me|it deserves all the praise|"
        "I was pleasantly surprised|it won me over|it's the best {kind} I've ever {ever}|I'd {again} in a heartbeat|"
        "I'll definitely {again}|I can't wait to {again}|don't miss it|it's an easy recommendation|you won't regret it|"
        "I'd give it ten out of ten|it's worth the hype|count me as a fan"
    ),
)
QUESTIONS = (
    L(
        "why did I waste my money on {item}?|could {item} be any worse?|who thought {a} was a good idea?|"
        "is it {m}? not even close.|what were they thinking with {a}?|is this some kind of joke?|"
        "how is {item} so highly rated?|does anyone actually enjoy {a}?|where do I even begin with {a}?"
    ),
    L(
        "why did I wait so long to try {item}?|could {item} be any better?|what more could you ask for?|"
        "is it perfect? no, but {c}.|who knew {item} could be this {m}?|looking for {am} {kind}? look no further.|"
        "need a reason to smile? try {item}.|is it worth it? absolutely.|did {a} live up to the hype? and then some!"
    ),
)
SARCASM = L("oh great, {c}|just what I wanted: {c}|love how {c}|fantastic, {c}|wonderful, {c}. thanks a lot")
INTROS = L(
    "Honestly, |Overall, |To be honest, |Frankly, |Well, |So, |In short, |Long story short, |I have to say |"
    "I must say |All in all, |Wow, |Okay, |Update: |Quick review: "
)
EXPECT = L("I expected|I had hoped|the reviews suggested|advertised|I remembered|the hype suggested|everyone said")
NEGATED = (
    L("{a} didn't impress me|{a} did nothing for me|I wasn't impressed by {a}|{a} never worked properly"),
    L("{a} never bothered me|I had no complaints about {a}|I wasn't disappointed by {a} at all|{a} never let me down"),
)
COMPARE = (
    L(
        "{a} {be} {mod}worse than {ref}|{a} {be} not as {q} as {ref}|{a} {be} a step down from {ref2}|"
        "{item} can't hold a candle to {ref2}|{a} {be} no match for {ref2}|{a} {be} {mod}less {q} than {ref}"
    ),
    L(
        "{a} {be} {mod}better than {ref}|{a} {be} nowhere near as {n} as {ref}|{a} {be} a big step up from {ref2}|"
        "{item} beats {ref2} hands down|{a} {be} miles ahead of {ref2}|{a} {be} {mod}more {q} than {ref}"
    ),
)
CONTRAST = L(
    "{side}, but {main}|{side}, but {main}|although {side}, {main}|{main}, even though {side}|"
    "{side}. however, {main}|{side}. still, {main}|{side}; that said, {main}|sure, {side}, but {main}|"
    "despite {a} being {x}, {main}|{main}, despite {a} being {x}|{side}, but overall {v}|"
    "I expected to {base} it, but {main}|I had {hl} expectations, {andbut} {main}|{crowd} {pv} it, but {main}"
)
HEARSAY = (
    L(
        "{crowd} complain about {a}, and {main}|people rave about it, but I don't get the hype|"
        "everyone warned me, and they were right|I see why it gets so many bad reviews"
    ),
    L(
        "{crowd} rave about {a}, and {main}|people rave about it, and for good reason|"
        "everyone hates on it, but I get why people love it|it has a loyal fan base, and I can see why"
    ),
)
OVERALL = L("{item} {be} {x}|what {art} {kind}! {main}|{item} {be} {noun}, and {c}|{item} {be} {x} from start to finish")
PEOPLE = L("my wife|my husband|my friend|my sister|my brother|my mom|my dad|my roommate|my partner|my coworker|my son")
DIDNT, CANT = L("didn't|did not|don't|do not"), L("can't|cannot|couldn't|can not")
CROWD = L("critics|my friends|the reviews|people online|my coworkers|most reviewers")  # plural subjects

# Domains: kind | items | acts (did|pp|ever|again) | past-tense probability | aspects ('+' = plural)
#          | comparison references | positive and negative domain-specific clauses.
DOMAINS = [
    dict(zip(("kind", "items", "acts", "past", "aspects", "refs", "pos", "neg"), d))
    for d in [
        (
            "phone",
            "this phone|the phone|my new phone|this handset",
            "bought it|bought it|owned|buy it again",
            0.2,
            "the battery|the screen|the camera|the speakers+|the build quality|the price|the charging speed|the software|the design|the face unlock",
            "my old phone|the previous model|other phones at this price|my last phone",
            "the battery easily lasts all day|the camera takes gorgeous photos even at night|it charges in no time|the screen is bright and crisp|it feels solid in the hand|it runs every app without a hiccup|calls come through loud and clear",
            "the battery dies before lunch|it overheats when I play games|the screen scratches if you look at it|the camera struggles in low light|it freezes every few hours|the charging port stopped working after a week|calls keep dropping",
        ),
        (
            "laptop",
            "this laptop|the laptop|my new laptop|this notebook",
            "bought it|bought it|owned|buy it again",
            0.2,
            "the keyboard|the trackpad|the display|the battery life|the fans+|the performance|the hinge|the webcam|the speakers+|the port selection",
            "my old laptop|the previous model|other laptops at this price|my work laptop",
            "it boots in seconds|the keyboard is a joy to type on|it handles video editing with ease|it stays cool and quiet under load|the battery gets me through a full workday|the screen is sharp and bright",
            "the fans sound like a jet engine|the trackpad misses half my clicks|it throttles after ten minutes|the hinge started wobbling within a month|it takes forever to boot|the battery barely lasts two hours",
        ),
        (
            "speaker",
            "this speaker|this bluetooth speaker|the speaker",
            "bought it|bought it|owned|buy it again",
            0.2,
            "the bass|the sound|the battery|the range|the volume|the companion app|the buttons+|the size|the pairing",
            "my old speaker|the competition|speakers twice the price|the previous version",
            "it fills the whole room with sound|the bass is rich without being muddy|it pairs instantly|it survived a drop into the pool|the battery lasts an entire weekend",
            "the sound distorts at high volume|it keeps disconnecting|the bass is thin and tinny|it dies after an hour|it crackles constantly",
        ),
        (
            "coffee maker",
            "this coffee maker|the machine|this espresso machine",
            "bought it|bought it|owned|buy it again",
            0.2,
            "the coffee|the milk frother|the water tank|the grinder|the cleaning process|the brew time|the controls+|the price",
            "my old machine|the cafe down the street|pods|the cheaper models",
            "it makes a perfect cup every morning|the espresso comes out rich and smooth|it heats up in under a minute|cleaning it takes seconds|the coffee tastes like it came from a cafe",
            "it leaks all over the counter|the coffee tastes burnt|it takes ages to heat up|the grinder jams constantly|it stopped working after a month",
        ),
        (
            "movie",
            "this movie|the film|this film|the movie",
            "watched it|watched it|seen|watch it again",
            0.7,
            "the plot|the acting|the ending|the soundtrack|the dialogue|the pacing|the cinematography|the lead actor|the special effects+|the script",
            "the original|the book|the trailer|the first one|the director's last film",
            "the plot kept me guessing until the end|the acting was superb across the board|the ending gave me chills|I laughed from start to finish|every scene looked like a painting|the story stayed with me for days|the twist genuinely surprised me",
            "the plot had more holes than a sponge|I checked my watch every ten minutes|the dialogue was painfully cheesy|the ending made no sense|I nearly fell asleep halfway through|the jokes landed with a thud|the twist was obvious from the first scene",
        ),
        (
            "show",
            "this show|the series|this series|the show",
            "started it|started it|watched|watch the next season",
            0.5,
            "the first season|the writing|the characters+|the finale|the pacing|the cast|the episodes+|the theme song|the world building",
            "the first season|the books|other shows in the genre|the hype",
            "I binged the whole season in a weekend|every episode ends on a great hook|the characters feel like real people|the finale tied everything together",
            "the middle episodes drag terribly|the characters make baffling decisions|the finale undid everything|I gave up after three episodes|the storylines go nowhere",
        ),
        (
            "restaurant",
            "this place|this restaurant|the restaurant|this bistro|this diner",
            "went there|gone there|eaten at|go back",
            0.9,
            "the food|the service|the waiter|the steak|the dessert|the portions+|the prices+|the atmosphere|the wine list|the staff+|the pasta|the music",
            "the place next door|our usual spot|other restaurants in town|last time|the photos online",
            "the food was great|the steak was cooked to perfection|the waiter was attentive and friendly|our food came out quickly|every dish was packed with flavor|the dessert was worth the trip alone|the staff made us feel at home",
            "the service ruined the evening|we waited an hour for cold food|the waiter forgot our order twice|the steak was as tough as leather|the bathroom was filthy|the fish tasted like it was days old|the manager was rude when we complained",
        ),
        (
            "hotel",
            "this hotel|the hotel|this resort|this inn",
            "booked it|booked it|stayed at|stay there again",
            0.9,
            "the room|the bed|the staff+|the location|the breakfast|the pool|the view|the front desk|the bathroom|the wifi|the check-in",
            "the photos online|other hotels nearby|our last trip|the place we stayed last year",
            "the room was spotless|the bed was like sleeping on a cloud|the staff went above and beyond|the view from our balcony was breathtaking|check-in took two minutes|the breakfast buffet had something for everyone",
            "the room smelled of smoke|we barely slept because of the noise|the shower was lukewarm at best|there was mold in the bathroom|the front desk ignored our complaints|the wifi never worked|the pool was closed the whole week",
        ),
        (
            "app",
            "this app|the app|this tool",
            "installed it|installed it|used|keep using it",
            0.2,
            "the interface|the latest update|the notifications+|the sync feature|the search|the dark mode|the subscription|the customer support|the onboarding|the widgets+",
            "the old version|the competition|the free alternatives|the website",
            "it syncs flawlessly across my devices|it does exactly what it promises|it saves me an hour every day|the interface is clean and intuitive|it never crashes",
            "it crashes every time I open it|it drains my battery|it keeps logging me out|the ads are everywhere|it lost all my data after the update|it asks for way too many permissions",
        ),
        (
            "book",
            "this book|the novel|this novel|the book",
            "read it|read it|read|read it again",
            0.5,
            "the writing|the characters+|the plot|the ending|the prose|the dialogue|the pacing|the narrator|the world building|the second half",
            "the author's first book|the movie|the first book in the series|the hype",
            "I couldn't put it down|the characters felt like old friends|the prose is beautiful|I stayed up all night to finish it|the ending made me cry in the best way",
            "I had to force myself to finish it|the characters are paper thin|the plot goes nowhere|the prose is clumsy and overwritten|I skimmed the last hundred pages",
        ),
        (
            "game",
            "this game|the game",
            "bought it|bought it|played|play it again",
            0.3,
            "the controls+|the graphics+|the story|the multiplayer|the level design|the soundtrack|the boss fights+|the load times+|the microtransactions+|the combat",
            "the first game|the previous entry|other games in the genre|the demo",
            "the controls feel tight and responsive|I lost hours to it without noticing|every level brings something new|the world is a joy to explore|the boss fights are thrilling",
            "it crashes constantly|the load times are endless|it's riddled with bugs|the microtransactions ruin it|the controls feel sluggish|the story is a confusing mess",
        ),
    ]
]
for _d in DOMAINS:
    for _k in ("items", "acts", "aspects", "refs", "pos", "neg"):
        _d[_k] = L(_d[_k])
    _d["spec"] = (_d.pop("neg"), _d.pop("pos"))
# How often each kind of clause / whole-review template is used (relative weights).
CLAUSE_WEIGHTS = {"adj": 25, "spec": 25, "neg": 10, "verb": 12, "noun": 8, "idiom": 8, "cmp": 10}
BODY_WEIGHTS = {
    "single": 30,
    "overall": 10,
    "verdict": 10,
    "contrast": 15,
    "negation": 12,
    "cmp": 8,
    "question": 6,
    "people": 6,
    "sarcasm": 3,
}


class Gen:
    """Composes one review of polarity p (0 = negative, 1 = positive); all randomness comes from self.r."""

    def __init__(self, rng: random.Random):
        self.r, self.c = rng, rng.choice

    def be(self, raw: str, neg: bool = False) -> str:
        plural = raw.endswith("+")
        word = ("were" if plural else "was") if self.past else ("are" if plural else "is")
        return word + (("n't" if self.r.random() < 0.7 else " not") if neg else "")

    def adjp(self, p: int) -> str:  # optional intensifier + adjective
        strong = self.r.random() < 0.4
        return f"{self.c(INT_STRONG if strong else INT_MILD[p])} {self.c((ADJ_STRONG if strong else ADJ_MILD)[p])}".strip()

    def fill(self, tpl: str, p: int, item_p: float = 0.15, **kw) -> str:
        """Formats a template for polarity p; {c}, {main} and {v} recurse only when the template uses them."""
        d = self.d
        raw = self.c(d["items"] if self.r.random() < item_p else d["aspects"])
        did, pp, ever, again = d["acts"]
        m, adj = self.c(ADJ_MILD[1]), self.c(ADJ_STRONG[p] + ADJ_MILD[p])
        vals = dict(
            c=self.clause(p, "spec adj idiom") if "{c}" in tpl else "",
            main=self.main(p) if "{main}" in tpl else "",
            v=self.verdict(p) if "{v}" in tpl else "",
            a=raw.rstrip("+"),
            be=self.be(raw),
            S=self.c(ADJ_STRONG[p]),
            did=did,
            pp=pp,
            ever=ever,
            again=again,
            kind=d["kind"],
            item=self.c(d["items"]),
            m=m,
            am=("an " if m[0] in "aeiou" else "a ") + m,
            art=("an " if adj[0] in "aeiou" else "a ") + adj,
            x=self.adjp(p),
            noun=self.c(NOUNS[p]),
            ref=self.c(d["refs"] + EXPECT),
            ref2=self.c(d["refs"]),
            mod=self.c(L("much |far |way |a lot |slightly |||")),
            n=self.c(ADJ_MILD[0]),
            q=self.c(L("enjoyable|impressive|reliable|fun|polished|exciting")),
            crowd=self.c(CROWD),
        )
        vals.update(kw)
        return tpl.format(**vals)

    def verdict(self, p: int) -> str:
        return self.fill(self.c(VERDICTS[p]), p)

    def main(self, p: int) -> str:
        return self.verdict(p) if self.r.random() < 0.45 else self.clause(p)

    def negation(self, p: int) -> str:
        k = self.r.randrange(6)
        if k <= 1:  # "wasn't great" -> negative, "wasn't bad at all" -> positive
            adv = self.c(L("|really|exactly|particularly|all that")) if p == 0 else ""
            tpl = f"{{a}} {{nbe}} {adv} {self.c(NEGATABLE[1 - p])} {self.c(NOT_TAIL[p])}"
        elif k == 2:
            hedge = self.c(L("far from|anything but|hardly" if p == 0 else "far from|anything but"))
            tpl = f"{{a}} {{be}} {hedge} {self.c(ADJ_MILD[1 - p] + ADJ_STRONG[1 - p])}"
        elif k == 3:
            tpl = f"I {self.c(DIDNT)} {self.c(BASE_VERBS[1 - p])} {{a}}"
        elif k == 4:
            tpl = f"I {self.c(CANT)} say I {self.c(CANT_SAY[1 - p])} {{a}}"
        else:
            tpl = self.c(NEGATED[p])
        raw = self.c(self.d["aspects"])
        return tpl.replace("{nbe}", self.be(raw, True)).replace("{be}", self.be(raw)).replace("{a}", raw.rstrip("+"))

    def clause(self, p: int, kinds: str = "adj spec neg verb noun idiom cmp") -> str:
        ks = kinds.split()
        k = self.r.choices(ks, [CLAUSE_WEIGHTS[x] for x in ks])[0]
        if k == "spec":
            return self.c(self.d["spec"][p])
        if k == "neg":
            return self.negation(p)
        if k == "cmp":
            return self.fill(self.c(COMPARE[p]), p, item_p=0.3)
        tpl = {"adj": "{a} {be} {x}", "noun": "{a} {be} {noun}", "verb": "I {pv} {a}", "idiom": self.c(IDIOMS[p])}[k]
        return self.fill(tpl, p, pv=self.c(PAST_VERBS[p]))

    def body(self, p: int) -> tuple[str, bool]:
        """Returns (text, is_question). Sarcasm is negative-only; for p=1 it falls through to 'single'."""
        k = self.r.choices(list(BODY_WEIGHTS), list(BODY_WEIGHTS.values()))[0]
        if k == "question":
            return self.fill(self.c(QUESTIONS[p]), p), True
        if k == "sarcasm" and p == 0:
            return self.fill(self.c(SARCASM), 0), False
        if k == "contrast":  # the label follows the main clause, the side clause has the opposite polarity
            return self.fill(
                self.c(CONTRAST),
                p,
                item_p=0.0,
                side=self.clause(1 - p),
                x=self.adjp(1 - p),
                base=self.c(L("love|like|enjoy") if p == 0 else L("hate|dislike")),
                hl=self.c(L("high|low")),
                andbut=self.c(L("and|but")),
                pv=self.c(PAST_VERBS[1 - p][:6]).replace("was ", "were "),
            ), False
        if k == "negation":
            return self.negation(p) + (f". {self.verdict(p)}" if self.r.random() < 0.25 else ""), False
        if k == "cmp":
            return self.fill(self.c(COMPARE[p]), p, item_p=0.3), False
        if k == "people":
            tpl = self.c(
                [
                    "{who} {says} {a} {be} {x}",
                    "{who} and I both {pv} {a}",
                    self.c(HEARSAY[p]),
                    "everyone {grp} agreed {a} {be} {x}",
                ]
            )
            return self.fill(
                tpl,
                p,
                item_p=0.3,
                who=self.c(PEOPLE),
                says=self.c(L("thinks|said|swears|agrees")),
                pv=self.c(PAST_VERBS[p]).replace("was ", "were "),
                grp=self.c(L("in our group|in my family|I know")),
            ), False
        if k == "verdict":
            tpl = self.c(["{c2}. {v}", "{v}: {c2}", "{v}. {spec}"])
            return self.fill(tpl, p, c2=self.clause(p), spec=self.c(self.d["spec"][p])), False
        if k == "overall":
            return self.fill(self.c(OVERALL), p, item_p=1.0), False
        first, x = self.clause(p), self.r.random()
        if x < 0.3:
            return f"{first}, and {self.clause(p)}{self.c(L('| too| as well'))}", False
        return (f"{first}. {self.verdict(p)}" if x < 0.55 else first), False

    def text(self, p: int) -> str:
        self.d = self.c(DOMAINS)
        self.past = self.r.random() < self.d["past"]
        body, question = self.body(p)
        if self.r.random() < 0.15 and not question:
            body = self.c(INTROS) + body
        t = " ".join(body.split()).replace(" ,", ",").replace(" .", ".")
        if not question and t[-1] not in ".!?":
            t += self.r.choices([".", "!", "!!", "...", ""], [75, 12, 3, 4, 6])[0]
        t = "".join(ch.upper() if i == 0 or t[i - 2 : i] in (". ", "? ", "! ") else ch for i, ch in enumerate(t))
        x = self.r.random()  # a little casing noise
        return t.lower() if x < 0.05 else t.upper() if x < 0.065 else t


def generate(seed: int = 0) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    gen, seen, rows = Gen(rng), set(), []
    while len(rows) < sum(SIZES.values()):
        p = int(rng.random() < 0.5)
        t = gen.text(p)
        key = " ".join("".join(ch if ch.isalnum() else " " for ch in t.lower()).split())  # unique up to case/punct.
        if 5 <= len(t.split()) <= 30 and key not in seen:
            seen.add(key)
            rows.append({"text": t, "label": LABELS[p]})
    splits, start = {}, 0
    for name, n in SIZES.items():
        part, start = [dict(r) for r in rows[start : start + n]], start + n
        for i in rng.sample(range(n), round(NOISE_RATE * n)):  # deliberate label noise
            part[i]["label"] = LABELS[1 - LABELS.index(part[i]["label"])]
        splits[name] = part
    return splits


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "llmft" / "resources" / "sentiment")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, part in generate(args.seed).items():
        with open(args.out / f"{name}.jsonl", "w", encoding="utf-8", newline="\n") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in part)
        print(f"wrote {len(part)} rows to {args.out / (name + '.jsonl')}")


if __name__ == "__main__":
    main()
