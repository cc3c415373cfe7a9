"""Text-generation metrics with their standard definitions, computed by the reference libraries.

BLEU and chrF come from sacrebleu, ROUGE from Google's rouge-score, exact match and F1 follow the
official SQuAD v2.0 evaluation script, and perplexity is exp of the token-weighted mean loss.
Heavy libraries are imported inside the functions that need them.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Sequence

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def _check_lengths(predictions: Sequence[object], references: Sequence[object]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references; they must pair up")
    if not predictions:
        raise ValueError("no predictions to score")


def bleu_chrf(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Corpus BLEU and chrF from sacrebleu (0-100), one reference per prediction, default settings."""
    import sacrebleu

    _check_lengths(predictions, references)
    refs = [list(references)]
    return {
        "bleu": float(sacrebleu.corpus_bleu(list(predictions), refs).score),
        "chrf": float(sacrebleu.corpus_chrf(list(predictions), refs).score),
    }


def _sentences_on_lines(text: str) -> str:
    """One sentence per line, as rougeLsum expects (it splits summaries on newlines only)."""
    return "\n".join(part for part in _SENTENCE_END.split(text.strip()) if part)


def rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    """ROUGE-1/2/L/Lsum F-measure (0-1), averaged over examples, with rouge-score and Porter stemming.

    rouge-score's rougeLsum treats each newline-separated line as a sentence, so for it every text is
    first split into sentences (after '.', '!' or '?' followed by whitespace) and put one per line;
    Hugging Face `evaluate` does the same with nltk. rouge1/rouge2/rougeL score the text unchanged.
    """
    from rouge_score import rouge_scorer

    _check_lengths(predictions, references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, reference in zip(predictions, references):
        plain = scorer.score(reference, prediction)  # score(target, prediction)
        lsum = scorer.score(_sentences_on_lines(reference), _sentences_on_lines(prediction))
        for key in ROUGE_TYPES:
            totals[key] += (lsum if key == "rougeLsum" else plain)[key].fmeasure
    return {key: total / len(predictions) for key, total in totals.items()}


def normalize_answer(text: str) -> str:
    """SQuAD normalization: lower case, drop punctuation and articles (a/an/the), collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def _exact(gold: str, prediction: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(prediction))


def _f1(gold: str, prediction: str) -> float:
    """Token-level F1 as in the SQuAD v2.0 script; empty vs empty is 1, empty vs non-empty is 0."""
    gold_tokens, pred_tokens = _tokens(gold), _tokens(prediction)
    if not gold_tokens or not pred_tokens:
        return float(gold_tokens == pred_tokens)
    same = sum((Counter(gold_tokens) & Counter(pred_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_em_f1(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """SQuAD exact match and F1 (0-100): max over the gold answers, averaged over questions.

    As in the official v2.0 script, gold answers that normalize to '' are dropped and a question with
    none left is unanswerable (gold ['']): it scores 1 only when the prediction normalizes to ''.
    """
    _check_lengths(predictions, references)
    exact_total = f1_total = 0.0
    for prediction, answers in zip(predictions, references):
        golds = [answer for answer in answers if normalize_answer(answer)] or [""]
        exact_total += max(_exact(gold, prediction) for gold in golds)
        f1_total += max(_f1(gold, prediction) for gold in golds)
    count = len(predictions)
    return {"exact_match": 100.0 * exact_total / count, "f1": 100.0 * f1_total / count}


def perplexity(total_loss: float, total_tokens: int) -> float:
    """exp(total_loss / total_tokens): `total_loss` is the summed token NLL (nats), not a mean of batch means.

    Returns inf when the exponent exceeds 700 (exp would overflow a float).
    """
    if total_tokens <= 0:
        raise ValueError(f"perplexity needs a positive token count, got {total_tokens}")
    exponent = total_loss / total_tokens
    return float("inf") if exponent > 700 else math.exp(exponent)
