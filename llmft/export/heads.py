"""What each exportable head outputs and how two runs of it are judged to agree. Keyed by the task's head class, the
one thing an exported graph is defined by (the families stay in tasks/)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmft.errors import UserError


@dataclass(frozen=True)
class Head:
    """An exportable head: its output names and what one compared "item" is."""

    outputs: tuple[str, ...]  # model output attributes, in the exported graph's order
    per_token: bool  # decoders: every attended position is an item (its next token); else every row is one
    item: str  # what agreement counts, for the printed line

    def agreeing(self, ours: list[np.ndarray], theirs: list[np.ndarray], mask: np.ndarray) -> tuple[int, int, float]:
        """(items that agree, items compared, max |logit difference|) for one batch."""
        if self.per_token:
            keep = mask.astype(bool)
            a, b = ours[0][keep], theirs[0][keep]  # (attended tokens, vocab)
            return int((a.argmax(-1) == b.argmax(-1)).sum()), int(keep.sum()), float(np.abs(a - b).max(initial=0.0))
        same = np.ones(len(ours[0]), dtype=bool)
        diff = 0.0
        for a, b in zip(ours, theirs):
            if a.ndim == 2 and a.shape == mask.shape:  # span logits: padding positions are masked out by the model
                a, b = np.where(mask.astype(bool), a, -np.inf), np.where(mask.astype(bool), b, -np.inf)
                finite = mask.astype(bool)
                diff = max(diff, float(np.abs(a[finite] - b[finite]).max(initial=0.0)))
            else:
                diff = max(diff, float(np.abs(a - b).max(initial=0.0)))
            same &= a.argmax(-1) == b.argmax(-1)
        return int(same.sum()), len(same), diff


HEADS = {
    "AutoModelForSequenceClassification": Head(("logits",), False, "rows with the same predicted label"),
    "AutoModelForQuestionAnswering": Head(("start_logits", "end_logits"), False, "windows with the same answer span"),
    "AutoModelForCausalLM": Head(("logits",), True, "tokens with the same next-token prediction"),
    "AutoModelForTokenClassification": Head(("logits",), True, "tokens with the same predicted tag"),
}


def head_for(auto_class_name: str) -> Head:
    """The exportable head of a task, or a one-line refusal naming the heads that export."""
    if auto_class_name not in HEADS:
        raise UserError(
            f"llmft export handles classification, regression, extractive QA, token classification (NER) "
            f"and decoder (causal_lm) runs; "
            f"this run's head is {auto_class_name.removeprefix('AutoModelFor')} (seq2seq export is not built yet)"
        )
    return HEADS[auto_class_name]
