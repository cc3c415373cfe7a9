"""What each exportable head outputs, the shape of its inputs, where its graph lives in the exported folder and how two
runs of it are judged to agree. Keyed by the task's head class, the one thing an exported graph is defined by (the
families stay in tasks/)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmft.errors import UserError

SAME_DIRECTION = 0.99  # two embeddings of one text "agree" at this cosine similarity or more


@dataclass(frozen=True)
class Head:
    """An exportable head: its output names, its input axes and what one compared "item" is."""

    outputs: tuple[str, ...]  # model output attributes, in the exported graph's order
    per_token: bool  # decoders: every attended position is an item (its next token); else every row is one
    item: str  # what agreement counts, for the printed line
    axes: tuple[str, ...] = ("batch", "sequence")  # each input's dynamic axes (multiple choice adds "choice")
    embeds: bool = False  # token states: a row agrees when its mean-pooled states point the same way
    model_file: str = "model.onnx"  # the graph's path in the exported folder
    cache: bool = False  # decoders: the graph takes and returns the KV cache (llmft.export.kv_cache)
    generates: bool = False  # encoder-decoders: runs compare greedy answers (tokens, each step's logits), not one pass

    def agreeing(self, ours: list[np.ndarray], theirs: list[np.ndarray], mask: np.ndarray) -> tuple[int, int, float]:
        """(items that agree, items compared, max |logit difference|) for one batch."""
        if self.embeds:
            return _same_direction(ours[0], theirs[0], mask)
        if self.generates:
            return _same_answers(ours, theirs)
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


def mean_pooled(states: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the attended token states of each row (sentence-transformers' mean Pooling)."""
    weights = mask.astype(states.dtype)[..., None]
    return (states * weights).sum(1) / np.clip(weights.sum(1), 1e-9, None)


def _same_direction(ours: np.ndarray, theirs: np.ndarray, mask: np.ndarray) -> tuple[int, int, float]:
    a, b = mean_pooled(ours, mask), mean_pooled(theirs, mask)
    cosine = (a * b).sum(-1) / np.clip(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12, None)
    keep = mask.astype(bool)
    return int((cosine >= SAME_DIRECTION).sum()), len(cosine), float(np.abs(ours[keep] - theirs[keep]).max(initial=0.0))


def _same_answers(ours: list[np.ndarray], theirs: list[np.ndarray]) -> tuple[int, int, float]:
    """Rows whose greedy answers are the same tokens, and the largest logit difference over the steps both took. Both
    pad a finished row and stop when every row has, so rows that agree agree on the shorter run's steps and the longer
    run's further steps are padding for them."""
    (a, a_logits), (b, b_logits) = ours, theirs
    steps = min(a.shape[1], b.shape[1])
    same = (a[:, :steps] == b[:, :steps]).all(-1)
    return int(same.sum()), len(same), float(np.abs(a_logits[:, :steps] - b_logits[:, :steps]).max(initial=0.0))


HEADS = {
    "AutoModelForSequenceClassification": Head(("logits",), False, "rows with the same predicted label"),
    "AutoModelForQuestionAnswering": Head(("start_logits", "end_logits"), False, "windows with the same answer span"),
    "AutoModelForCausalLM": Head(("logits",), True, "tokens with the same next-token prediction", cache=True),
    "AutoModelForTokenClassification": Head(("logits",), True, "tokens with the same predicted tag"),
    "AutoModelForMultipleChoice": Head(
        ("logits",), False, "questions with the same chosen answer", axes=("batch", "choice", "sequence")
    ),
    "AutoModel": Head(  # embeddings: sentence-transformers' ONNX layout (its Pooling runs on the graph's token states)
        ("last_hidden_state",),
        False,
        f"texts whose mean-pooled embedding has cosine >= {SAME_DIRECTION}",
        embeds=True,
        model_file="onnx/model.onnx",
    ),
    "AutoModelForSeq2SeqLM": Head(  # optimum's layout: encoder_model.onnx + decoder graphs (llmft.export.seq2seq_onnx)
        ("sequences", "logits"), False, "rows whose greedy answer is generate's", model_file="encoder_model.onnx", generates=True
    ),
}


def head_for(auto_class_name: str) -> Head:
    """The exportable head of a task, or a one-line refusal naming the heads that export."""
    if auto_class_name not in HEADS:
        raise UserError(
            f"llmft export handles classification, regression, extractive QA, token classification (NER), "
            f"multiple choice, embedding, decoder (causal_lm) and seq2seq runs; "
            f"this run's head is {auto_class_name.removeprefix('AutoModelFor')}"
        )
    return HEADS[auto_class_name]
