"""Write llmft/resources/attacks/synonyms.jsonl, the word list of `llmft eval ... attack=synonym` (hand-written here:
common English review words with replacements that keep the sentence's meaning and sentiment)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SYNONYMS = {
    "absolutely": ["completely", "totally"],
    "anyone": ["anybody", "anyone at all"],
    "avoid": ["shun", "skip"],
    "bad": ["poor", "awful", "lousy"],
    "best": ["finest", "top"],
    "better": ["superior", "finer"],
    "big": ["large", "huge"],
    "book": ["volume", "novel"],
    "bought": ["purchased", "acquired"],
    "buy": ["purchase", "get"],
    "characters": ["personas", "figures"],
    "design": ["styling", "layout"],
    "dialogue": ["dialog", "conversation"],
    "disappointed": ["let down", "dissatisfied"],
    "dislike": ["mislike", "disfavor"],
    "ending": ["conclusion", "finale"],
    "enjoyable": ["pleasant", "fun"],
    "enjoyed": ["liked", "relished"],
    "every": ["each", "every single"],
    "everyone": ["everybody", "all"],
    "exciting": ["thrilling", "gripping"],
    "expected": ["anticipated", "predicted"],
    "extremely": ["very", "exceedingly"],
    "film": ["movie", "picture"],
    "finale": ["ending", "conclusion"],
    "fun": ["enjoyable", "entertaining"],
    "game": ["title", "match"],
    "good": ["fine", "decent", "nice"],
    "great": ["excellent", "terrific", "superb"],
    "hate": ["loathe", "detest"],
    "hated": ["loathed", "detested"],
    "highly": ["strongly", "warmly"],
    "honestly": ["frankly", "truthfully"],
    "hoped": ["wished", "expected"],
    "hotel": ["inn", "lodging"],
    "impressed": ["amazed", "struck"],
    "impressive": ["remarkable", "striking"],
    "laptop": ["notebook", "computer"],
    "letdown": ["disappointment", "failure"],
    "like": ["enjoy", "appreciate"],
    "liked": ["enjoyed", "appreciated"],
    "long": ["lengthy", "extended"],
    "love": ["adore", "cherish"],
    "loved": ["adored", "cherished"],
    "money": ["cash", "funds"],
    "movie": ["film", "picture"],
    "never": ["not ever", "at no time"],
    "new": ["fresh", "recent"],
    "nothing": ["naught", "zilch"],
    "novel": ["book", "story"],
    "okay": ["alright", "fine"],
    "old": ["aged", "dated"],
    "overall": ["altogether", "all in all"],
    "phone": ["handset", "mobile"],
    "plot": ["storyline", "story"],
    "polished": ["refined", "slick"],
    "pretty": ["fairly", "rather"],
    "price": ["cost", "charge"],
    "quick": ["fast", "speedy"],
    "quite": ["rather", "fairly"],
    "rather": ["quite", "fairly"],
    "really": ["truly", "genuinely"],
    "recommend": ["suggest", "endorse"],
    "reliable": ["dependable", "trustworthy"],
    "restaurant": ["eatery", "diner"],
    "short": ["brief", "small"],
    "show": ["series", "program"],
    "simply": ["just", "merely"],
    "slightly": ["somewhat", "a bit"],
    "speaker": ["loudspeaker", "speaker unit"],
    "staff": ["employees", "personnel"],
    "story": ["tale", "narrative"],
    "sure": ["certain", "confident"],
    "truly": ["really", "genuinely"],
    "utterly": ["completely", "totally"],
    "very": ["extremely", "highly"],
    "waste": ["squander", "loss"],
    "worse": ["poorer", "inferior"],
    "worst": ["poorest", "lousiest"],
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "llmft" / "resources" / "attacks")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"word": word, "synonyms": synonyms}) for word, synonyms in SYNONYMS.items()]
    (args.out / "synonyms.jsonl").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
