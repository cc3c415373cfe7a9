"""Text-generation metrics with their standard definitions, computed by the reference libraries.

BLEU and chrF come from sacrebleu, ROUGE from Google's rouge-score, exact match and F1 follow the
official SQuAD v2.0 evaluation script, and perplexity is exp of the token-weighted mean loss.
Heavy libraries are imported inside the functions that need them.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections import Counter
from typing import Any, Sequence

from llmft.config_types import TextMetric
from llmft.errors import UserError

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
# Abbreviations after which a period does not end a sentence (lower case, without their final period); single-letter
# initials ("J. R. R. Tolkien") are recognised by punkt itself.
ABBREVIATIONS = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "mt",
        "gen",
        "gov",
        "sen",
        "rep",
        "rev",
        "col",
        "capt",
        "lt",
        "sgt",
        "u.s",
        "u.k",
        "u.n",
        "e.u",
        "u.s.a",
        "d.c",
        "a.m",
        "p.m",
        "e.g",
        "i.e",
        "vs",
        "approx",
        "dept",
        "fig",
        "vol",
        "inc",
        "ltd",
        "co",
        "corp",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
    }
)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def _check_lengths(predictions: Sequence[object], references: Sequence[object]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references; they must pair up")
    if not predictions:
        raise ValueError("no predictions to score")


def bleu_chrf(predictions: list[str], references: list[str], tokenize: str = "13a") -> dict[str, float]:
    """Corpus BLEU and chrF from sacrebleu (0-100), one reference per prediction, default settings except
    BLEU's tokenizer (`tokenize`: sacrebleu's name, e.g. `13a`, `zh`, `ja-mecab`, `intl`, `char`, `flores200`)."""
    import sacrebleu

    _check_lengths(predictions, references)
    refs = [list(references)]
    return {
        "bleu": float(sacrebleu.corpus_bleu(list(predictions), refs, tokenize=tokenize).score),
        "chrf": float(sacrebleu.corpus_chrf(list(predictions), refs).score),
    }


def check_bleu_tokenizer(tokenize: str) -> None:
    """Build sacrebleu's BLEU tokenizer `tokenize` now, so a missing extra (MeCab for `ja-mecab`, sentencepiece for
    `flores200`) or a model download that needs the network fails before training, not at its first eval."""
    from sacrebleu.metrics.bleu import BLEU

    try:
        BLEU(tokenize=tokenize)
    except Exception as ex:  # ImportError, or sacrebleu's own error types for a missing extra or a failed download
        detail = " ".join(str(ex).split()) or type(ex).__name__
        raise UserError(f"task.bleu_tokenize={tokenize} cannot be used here: {detail}") from ex  # sacrebleu names the fix


@functools.lru_cache(maxsize=1)
def _sentence_splitter() -> Any:
    """nltk's punkt algorithm with a fixed list of abbreviations (its trained English model is a separate
    download, often absent offline; a fixed list also keeps scores the same on every machine)."""
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    params = PunktParameters()
    params.abbrev_types = set(ABBREVIATIONS)
    return PunktSentenceTokenizer(params)


def sentences(text: str) -> list[str]:
    """Sentences of `text`: split after '.', '!' or '?', but not after `Mr.`, `U.S.`, `p.m.` or initials."""
    return [part.strip() for part in _sentence_splitter().tokenize(text.strip()) if part.strip()]


def _sentences_on_lines(text: str) -> str:
    """One sentence per line, as rougeLsum expects (it splits summaries on newlines only)."""
    return "\n".join(sentences(text))


def rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    """ROUGE-1/2/L/Lsum F-measure (0-1), averaged over examples, with rouge-score and Porter stemming.

    rouge-score's rougeLsum treats each newline-separated line as a sentence, so for it every text is
    first split into sentences (`sentences`: nltk's punkt, which does not split after `Mr.`, `U.S.` or
    initials) and put one per line; Hugging Face `evaluate` does the same with nltk's trained punkt.
    rouge1/rouge2/rougeL score the text unchanged.
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


def text_metric_values(
    metric: TextMetric, predictions: list[str], references: list[list[str]], bleu_tokenize: str = "13a"
) -> dict[str, float]:
    """The standard metric on generated text (sacrebleu, rouge-score, the SQuAD definitions); `bleu_tokenize` is
    sacrebleu's BLEU tokenizer (task.bleu_tokenize)."""
    firsts = [r[0] if r else "" for r in references]
    if metric is TextMetric.rouge:
        return rouge(predictions, firsts)
    if metric is TextMetric.bleu:
        return bleu_chrf(predictions, firsts, tokenize=bleu_tokenize)
    if metric is TextMetric.squad:
        return squad_em_f1(predictions, references)
    if metric is TextMetric.exact_match:
        return {"exact_match": 100.0 * sum(p.strip() == f.strip() for p, f in zip(predictions, firsts)) / max(len(firsts), 1)}
    return {}
