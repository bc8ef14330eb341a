from __future__ import annotations

import pytest

from labelgate.guard.models import local_model_available
from labelgate.guard.similarity import (
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
    assert loose.same("answer is four", "the answer is four")
    assert not loose.same("answer is four", "the answer is 4")  # 4 is a value, four a word
    assert loose.describe() == "token_f1>=0.5, same values"
    assert Similarity(metric="token_f1", values=False).describe() == "token_f1>=0.8"
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


# --------------------------------------------------------------------------- tool calls


def test_parse_tool_call_forms() -> None:
    from labelgate.guard.similarity import parse_tool_call

    call = parse_tool_call('ACTION: reply_email(to: "Olli@X.example", body: "Yes, 18 March")')
    assert call is not None and call.name == "reply_email"
    assert call.args == {"to": "Olli@X.example", "body": "Yes, 18 March"}
    assert parse_tool_call("book_room(Oak, 09:00)").args == {"#0": "Oak", "#1": "09:00"}
    # An unquoted value with a comma continues the previous argument.
    assert parse_tool_call("reply(to=aino, body=Yes, see you)").args["body"] == "Yes, see you"
    cut = parse_tool_call("send_message(to=Laura, text=The incident is clo")
    assert cut is not None and cut.args["text"] == "The incident is clo"
    assert parse_tool_call("The answer is (4)") is None
    assert parse_tool_call("Sure! Here it is.") is None


def test_tool_calls_compare_argument_values_not_word_overlap() -> None:
    sim = Similarity()  # rouge_l >= 0.8, tool calls on by default
    a, b = "pay_invoice(iban=FI21 1234, amount=2450)", "pay_invoice(iban=FI21 1234, amount=2540)"
    assert rouge_l(a, b) >= 0.8  # plain text overlap would call a changed amount "the same"
    assert not sim.same(a, b)
    assert not Similarity(tool_calls=False).same(a, b)  # the values differ: 2450 vs 2540
    # the hole the tool-call and value comparisons close
    assert Similarity(tool_calls=False, values=False).same(a, b)
    # Formatting, quoting and argument order do not matter; the tool and the values do.
    assert sim.same("book_room(room=Oak, time=09:00)", 'book_room(time: "09:00", room: oak)')
    assert not sim.same("book_room(room=Oak, time=09:00)", "book_room(room=Oak)")
    assert not sim.same("book_room(room=Oak, time=09:00)", "create_event(room=Oak, time=09:00)")
    # A tool call against prose is a different next step.
    assert sim.score("answer(text=Vaasa)", "Vaasa") == 0.0
    # Long free-text values are compared by the metric, not exactly.
    long_a = "reply_email(to=aino, body=Friday is fine for the site visit, see you then)"
    long_b = "reply_email(to=aino, body=Friday is fine for the site visit, see you there)"
    assert sim.same(long_a, long_b)
    assert not sim.same(long_a, long_b.replace("to=aino", "to=petra"))
