"""Text metrics match their reference libraries and hand-worked cases (no torch needed)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from llmft.evaluation.text_metrics import bleu_chrf, normalize_answer, perplexity, rouge, squad_em_f1

PREDS = ["The cat sat on the mat.", "A quick brown fox jumps over a lazy dog.", "It is raining heavily in the city today."]
REFS = ["The cat is sitting on the mat.", "The quick brown fox jumped over the lazy dog.", "Today it rains a lot in the city."]


def test_module_does_not_import_torch() -> None:
    code = "import sys, llmft.evaluation.text_metrics; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_bleu_chrf_match_sacrebleu() -> None:
    import sacrebleu

    scores = bleu_chrf(PREDS, REFS)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(PREDS, [REFS]).score)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(PREDS, [REFS]).score)
    assert 0 < scores["bleu"] < 100 and 0 < scores["chrf"] < 100


def test_bleu_chrf_identical_is_100() -> None:
    scores = bleu_chrf(REFS, REFS)
    assert scores["bleu"] == pytest.approx(100.0)
    assert scores["chrf"] == pytest.approx(100.0)


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError):
        bleu_chrf(PREDS, REFS[:2])
    with pytest.raises(ValueError):
        rouge([], [])
    with pytest.raises(ValueError):
        squad_em_f1(["a"], [])


def test_rouge_matches_rouge_score_averaged() -> None:
    from rouge_score import rouge_scorer

    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(types, use_stemmer=True)
    per_example = [scorer.score(ref, pred) for pred, ref in zip(PREDS, REFS)]
    scores = rouge(PREDS, REFS)
    assert set(scores) == set(types)
    for key in types:  # one sentence per text, so rougeLsum needs no extra newlines here
        expected = sum(s[key].fmeasure for s in per_example) / len(per_example)
        assert scores[key] == pytest.approx(expected)


def test_rouge1_by_hand() -> None:
    from rouge_score import rouge_scorer

    pred, ref = "the cat sat", "the cat sat on the mat"
    score = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True).score(ref, pred)["rouge1"]
    assert (score.precision, score.recall) == pytest.approx((1.0, 0.5))
    assert rouge([pred], [ref])["rouge1"] == pytest.approx(2 / 3)


def test_rougelsum_splits_sentences_onto_lines() -> None:
    from rouge_score import rouge_scorer

    pred, ref = "the dog ran. the cat sat.", "the cat sat. the dog ran."
    scores = rouge([pred], [ref])
    # Plain LCS over the whole text only finds one sentence; summary-level LCS matches both.
    assert scores["rougeL"] == pytest.approx(0.5)
    assert scores["rougeLsum"] == pytest.approx(1.0)
    scorer = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=True)
    expected = scorer.score("the cat sat.\nthe dog ran.", "the dog ran.\nthe cat sat.")["rougeLsum"]
    assert scores["rougeLsum"] == pytest.approx(expected.fmeasure)


def test_squad_normalization_and_exact_match() -> None:
    assert normalize_answer("  The Eiffel   Tower! ") == "eiffel tower"
    assert normalize_answer("An apple, a day") == "apple day"
    assert squad_em_f1(["The Eiffel Tower!"], [["eiffel tower"]]) == {"exact_match": 100.0, "f1": 100.0}


def test_squad_partial_f1_by_hand() -> None:
    # pred tokens [big, red, cat], gold [red, cat, sat]: 2 shared, P = R = 2/3, F1 = 2/3.
    scores = squad_em_f1(["the big red cat"], [["a red cat sat"]])
    assert scores["exact_match"] == 0.0
    assert scores["f1"] == pytest.approx(100 * 2 / 3)
    # Repeated tokens count once per occurrence (Counter overlap): pred [cat, cat], gold [cat] -> P 1/2, R 1.
    assert squad_em_f1(["cat cat"], [["cat"]])["f1"] == pytest.approx(100 * 2 / 3)


def test_squad_max_over_gold_answers() -> None:
    assert squad_em_f1(["red cat"], [["blue dog", "Red cat."]]) == {"exact_match": 100.0, "f1": 100.0}
    # vs "cat": P 1/3, R 1 -> 0.5; vs "red cat": P 2/3, R 1 -> 0.8; the max is taken.
    scores = squad_em_f1(["red cat sat"], [["cat", "red cat"]])
    assert scores["exact_match"] == 0.0
    assert scores["f1"] == pytest.approx(80.0)


def test_squad_no_answer() -> None:
    assert squad_em_f1([""], [[]]) == {"exact_match": 100.0, "f1": 100.0}
    assert squad_em_f1(["x"], [[]]) == {"exact_match": 0.0, "f1": 0.0}
    assert squad_em_f1(["the"], [["", "a"]]) == {"exact_match": 100.0, "f1": 100.0}  # all golds empty
    assert squad_em_f1([""], [["cat"]]) == {"exact_match": 0.0, "f1": 0.0}


def test_squad_averages_over_questions() -> None:
    scores = squad_em_f1(["eiffel tower", "x", "the big red cat"], [["Eiffel Tower"], [], ["a red cat sat"]])
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 0 + 2 / 3) / 3)


def test_perplexity_is_token_weighted() -> None:
    # Batch 1: 10 tokens, summed NLL 10 (mean 1.0); batch 2: 2 tokens, summed NLL 6 (mean 3.0).
    losses, tokens = [10.0, 6.0], [10, 2]
    ppl = perplexity(sum(losses), sum(tokens))
    assert ppl == pytest.approx(math.exp(16 / 12))
    mean_of_means = math.exp((1.0 + 3.0) / 2)
    assert ppl != pytest.approx(mean_of_means)


def test_perplexity_edge_cases() -> None:
    assert perplexity(0.0, 5) == 1.0
    assert perplexity(1e6, 1) == float("inf")
    assert perplexity(700.0, 1) == pytest.approx(math.exp(700))
    with pytest.raises(ValueError):
        perplexity(1.0, 0)
