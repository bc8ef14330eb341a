from __future__ import annotations

import pytest

from guard.models import local_model_available
from guard.similarity import (
    Similarity,
    SimilarityConfig,
    containment,
    content_tokens,
    rouge_l,
    rouge_l_recall,
    token_f1,
    tokens,
)


def test_tokens_ignore_case_punctuation_and_width() -> None:
    assert tokens("Hello,  WORLD! ＡＢＣ") == ["hello", "world", "abc"]
    assert content_tokens("The code is 7 and X") == ["code", "7"]


def test_token_f1_and_rouge_l() -> None:
    assert token_f1("the cat sat", "the cat sat") == 1.0
    assert token_f1("a b", "c d") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("", "x") == 0.0
    # ROUGE-L sees order, bag-of-words F1 does not.
    assert token_f1("alice pays bob", "bob pays alice") == 1.0
    assert rouge_l("alice pays bob", "bob pays alice") == pytest.approx(1 / 3)
    assert rouge_l("the code is 4711", "The code is 4711.") == 1.0
    assert rouge_l("a b c d", "a b x d") == pytest.approx(0.75)


def test_rouge_l_recall_forgives_extra_words_in_the_candidate_only() -> None:
    output = "The Q3 revenue was 41 million euros."
    longer = "The Q3 revenue was 41 million euros, up 6 percent from Q2."
    assert rouge_l_recall(longer, output) == 1.0
    assert rouge_l_recall(output, longer) < 0.7
    assert rouge_l_recall("anything", "") == 1.0
    assert Similarity(metric="rouge_l_recall", threshold=0.9).same(longer, output)
    assert not Similarity(metric="rouge_l", threshold=0.9).same(longer, output)


def test_containment() -> None:
    part = ["vault", "code", "4711"]
    assert containment(part, ["the", "vault", "code", "4711"], 2) == 1.0
    assert containment(part, ["vault", "4711"], 2) == 0.0
    assert containment([], ["x"], 1) == 0.0


def test_similarity_threshold_and_metric() -> None:
    strict = Similarity(threshold=1.0)
    assert strict.same("The answer is 4.", "the answer is 4")
    assert not strict.same("The answer is 4.", "the answer is 5")
    loose = Similarity(SimilarityConfig(metric="token_f1", threshold=0.5))
    assert loose.same("answer is four", "the answer is 4")
    assert loose.describe() == "token_f1>=0.5"
    with pytest.raises(ValueError):
        SimilarityConfig(threshold=1.5)


@pytest.mark.slow
@pytest.mark.skipif(not local_model_available(), reason="llama_cpp or the SmolLM2 GGUF missing")
def test_embedding_similarity_ranks_paraphrase_above_unrelated() -> None:
    sim = Similarity(metric="embedding", threshold=0.5)
    base = "The meeting moved to Thursday afternoon."
    close = sim.score(base, "The meeting was moved to Thursday afternoon.")
    far = sim.score(base, "Bananas are rich in potassium.")
    assert close > far
