"""Ensembles of token-classification runs (`llmft eval run=[a,b]`, `llmft generate run=[a,b]`): each word's tag
probabilities (read on its first sub-word, as training read them) averaged over the members, then each word's tag and
the entities they make, grouped as the Hugging Face pipeline groups them (aggregation_strategy="first")."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from llmft.errors import UserError

DIFFERENT_WORDS = (
    "ensemble members split the rows into different words (their tokenizers differ); ensemble runs "
    "trained on the same data and tokenizer"
)


def average_word_partials(members: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One partial per shard whose per-word tag probabilities are the members' mean, whose predicted tags are that
    mean's argmax, and whose loss is the NLL of that mean per scored word."""
    gold = [row for p in members[0] for row in p["gold"]]
    if any([row for p in other for row in p["gold"]] != gold for other in members[1:]):
        raise UserError(DIFFERENT_WORDS)
    out = []
    for shard in zip(*members):
        probs = [np.mean(rows, axis=0) for rows in zip(*(m["probs"] for m in shard))]
        labels = shard[0]["gold"]
        loss = float(sum(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).sum() for p, y in zip(probs, labels)))
        out.append(
            {
                "loss": loss,
                "tokens": sum(len(y) for y in labels),
                "gold": labels,
                "predicted": [p.argmax(-1).tolist() for p in probs],
                "probs": probs,
            }
        )
    return out


@torch.no_grad()
def word_probabilities(model: Any, tokenizer: Any, text: str, max_length: int, device: Any) -> list[dict[str, Any]]:
    """Each word of `text` (the tokenizer's pre-tokenized words): its character span and the tag probabilities of its
    first sub-word."""
    enc = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping")[0].tolist()
    probs = torch.softmax(model(**{k: v.to(device) for k, v in enc.items()}).logits.float()[0], -1).cpu().tolist()
    words: dict[int, dict[str, Any]] = {}
    for position, word in enumerate(enc.word_ids(0)):
        if word is None:
            continue
        if word not in words:
            words[word] = {"start": offsets[position][0], "end": offsets[position][1], "probabilities": probs[position]}
        words[word]["end"] = offsets[position][1]
    return list(words.values())


def average_words(members: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row's words with the members' mean tag probabilities (every member must split the row alike)."""
    spans = [(w["start"], w["end"]) for w in members[0]]
    if any([(w["start"], w["end"]) for w in other] != spans for other in members[1:]):
        raise UserError(DIFFERENT_WORDS)
    return [
        {"start": s, "end": e, "probabilities": np.mean([m[i]["probabilities"] for m in members], axis=0).tolist()}
        for i, (s, e) in enumerate(spans)
    ]


def entities_of(text: str, words: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """Words tagged by their most probable tag, grouped into entities: a word joins the open entity when its type is the
    same and its tag does not begin one (B-); the entity's score is its words' mean; 'O' words are no entity."""
    groups: list[list[tuple[str, str, dict[str, Any]]]] = []
    for word in words:
        best = int(np.argmax(word["probabilities"]))
        name = names[best]
        bi, kind = (name[0], name[2:]) if name[:2] in ("B-", "I-") else ("I", name)
        if groups and groups[-1][-1][1] == kind and bi != "B":
            groups[-1].append((bi, kind, {**word, "score": word["probabilities"][best]}))
        else:
            groups.append([(bi, kind, {**word, "score": word["probabilities"][best]})])
    out = []
    for group in groups:
        if group[0][1] == "O":
            continue
        start, end = group[0][2]["start"], group[-1][2]["end"]
        out.append(
            {
                "entity_group": group[0][1],
                "score": float(np.mean([w["score"] for _, _, w in group])),
                "word": text[start:end],
                "start": start,
                "end": end,
            }
        )
    return out


def first_subwords(tokenizer: Any, text: str, max_length: int) -> list[tuple[int, int, int]]:
    """Each word of `text`: (position of its first sub-word, start, end) in the encoding `llmft explain` gives."""
    enc = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=True)
    words: dict[int, list[int]] = {}
    for position, word in enumerate(enc.word_ids()):
        if word is not None:
            span = enc["offset_mapping"][position]
            words.setdefault(word, [position, span[0], span[1]])[2] = span[1]
    return [(p, s, e) for p, s, e in words.values()]


def entity_starts(tags: list[str]) -> list[int]:
    """The indexes of the words that open an entity, grouped as `entities_of` groups them."""
    out, previous = [], "O"
    for i, tag in enumerate(tags):
        kind = tag[2:] if tag[:2] in ("B-", "I-") else tag
        if kind != "O" and (tag.startswith("B-") or kind != previous):
            out.append(i)
        previous = kind
    return out
