"""Propagators on cases where influence is known exactly.

The scripted model's answer is built from the facts of the *influential* documents present in
the prompt (other documents are ignored), so an input is influential exactly when it is one of
those: the true minimal label is known for every case.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelgate.guard.items import ItemKind, LabeledItem, LLMCall
from labelgate.guard.labels import Label, Lattice
from labelgate.guard.models import Message, ScriptedModel, local_model_available
from labelgate.guard.propagation import (
    PROPAGATORS,
    CitationPropagator,
    CounterfactualPropagator,
    IntrospectionPropagator,
    SimilarityPropagator,
    get_propagator,
    join_label,
)
from labelgate.guard.similarity import Similarity

LAT = Lattice()
FACTS = [
    "vault code 4711 opens the north door",
    "falcon project ships in march",
    "payroll server runs on host zeta",
    "quarterly revenue grew eleven percent",
    "the tunnel closes at midnight",
]


def doc(n: int, label: Label) -> LabeledItem:
    return LabeledItem(
        text=f"Document {n}. Note: {FACTS[n]}.",
        label=label,
        kind=ItemKind.DOCUMENT,
        role="user",
        name=f"doc{n}",
        id=f"d{n}",
    )


def make_call(docs: Sequence[LabeledItem]) -> LLMCall:
    system = LabeledItem("You answer from the documents.", LAT.bottom, role="system", id="sys")
    question = LabeledItem("What do the notes say?", LAT.bottom, role="user", id="q")
    return LLMCall(items=[system, *docs, question], params={"max_tokens": 48})


def facts_in(text: str) -> list[int]:
    return [n for n, fact in enumerate(FACTS) if fact in text]


def answer_for(messages: Sequence[Message], influential: set[int]) -> str:
    """The context answer: the influential facts present, in order."""
    present = [n for m in messages for n in facts_in(m["content"]) if n in influential]
    return "; ".join(FACTS[n] for n in present) or "I do not know."


def responder(influential: set[int], used_reply: str | None = None):
    """Answers context prompts from the influential facts; answers 'which sources' prompts
    with ``used_reply`` or, by default, the truth."""

    def respond(messages: Sequence[Message]) -> str:
        text = messages[-1]["content"]
        if "Which numbered sources" in text or "Which sources" in text:
            if used_reply is not None:
                return used_reply
            sources = re.findall(r"\[(\d+)\] (.*)", text)
            used = [num for num, body in sources if set(facts_in(body)) & influential]
            return ", ".join(used) or "none"
        return answer_for(messages, influential)

    return respond


PUBLIC_UNTRUSTED = LAT.label("public", "untrusted", sources=["web:blog"])
CONFIDENTIAL = LAT.label("confidential", "trusted", sources=["rag:hr"])
INTERNAL_WEB = LAT.label("internal", "untrusted", sources=["web:wiki"])
SECRET = LAT.label("secret", "trusted", sources=["rag:vault"], categories=["finance"])
LABEL_POOL = [PUBLIC_UNTRUSTED, CONFIDENTIAL, INTERNAL_WEB, SECRET]


def three_doc_case(influential: set[int]):
    docs = [doc(0, CONFIDENTIAL), doc(1, PUBLIC_UNTRUSTED), doc(2, INTERNAL_WEB)]
    call = make_call(docs)
    model = ScriptedModel(responder(influential))
    output = answer_for([{"content": d.text} for d in docs], influential)
    return call, model, output


# --------------------------------------------------------------------------- join


async def test_join_is_the_join_of_all_inputs() -> None:
    call, _, output = three_doc_case({0})
    result = await get_propagator("join").propagate(call, output, LAT)
    assert result.label == CONFIDENTIAL | PUBLIC_UNTRUSTED | INTERNAL_WEB
    assert result.model_calls == 0 and result.dropped == []
    assert sorted(result.influential) == ["d0", "d1", "d2"]


# --------------------------------------------------------------------------- counterfactual


async def test_counterfactual_keeps_only_the_influential_document() -> None:
    call, model, output = three_doc_case({0})
    result = await CounterfactualPropagator(model).propagate(call, output, LAT)
    assert result.label == CONFIDENTIAL
    assert result.influential == ["d0"] and sorted(result.dropped) == ["d1", "d2"]
    assert not result.fell_back
    assert result.more_permissive_than(join_label(call, LAT))
    assert result.model_calls == len(model.calls)
    # Every re-query is greedy and seeded.
    assert model.calls and all(m["role"] for call_ in model.calls for m in call_)


async def test_counterfactual_with_no_influential_document_is_bottom() -> None:
    call, model, output = three_doc_case(set())
    result = await CounterfactualPropagator(model).propagate(call, output, LAT)
    assert result.label == LAT.bottom
    assert sorted(result.dropped) == ["d0", "d1", "d2"]


async def test_counterfactual_all_influential_is_the_join() -> None:
    call, model, output = three_doc_case({0, 1, 2})
    result = await CounterfactualPropagator(model).propagate(call, output, LAT)
    assert result.label == join_label(call, LAT)
    assert not result.fell_back and result.dropped == []


async def test_counterfactual_budget_exhaustion_falls_back_to_join() -> None:
    call, model, output = three_doc_case({1})
    result = await CounterfactualPropagator(model, budget=2).propagate(call, output, LAT)
    assert result.fell_back and "budget" in result.reason
    assert result.label == join_label(call, LAT)
    assert result.model_calls == 2 == len(model.calls)


async def test_counterfactual_falls_back_when_full_context_does_not_reproduce() -> None:
    call, model, _ = three_doc_case({0})
    result = await CounterfactualPropagator(model).propagate(call, "something else", LAT)
    assert result.fell_back and result.label == join_label(call, LAT)
    assert result.model_calls == 1


async def test_counterfactual_memoises_identical_sub_contexts() -> None:
    docs = [doc(0, CONFIDENTIAL), doc(1, CONFIDENTIAL), doc(2, PUBLIC_UNTRUSTED)]
    call = make_call(docs)
    model = ScriptedModel(responder({0, 1}))
    output = answer_for([{"content": d.text} for d in docs], {0, 1})
    result = await CounterfactualPropagator(model).propagate(call, output, LAT)
    assert result.label == CONFIDENTIAL
    contexts = [tuple(m["content"] for m in c) for c in model.calls]
    assert len(contexts) == len(set(contexts)), "a sub-context was queried twice"


async def test_leave_one_out_catches_what_the_lattice_search_misses() -> None:
    """An answer that is the same with both documents or neither, but not with one of them:
    the bottom sub-context reproduces it, yet each document's removal changes it."""
    docs = [doc(0, CONFIDENTIAL), doc(1, PUBLIC_UNTRUSTED)]
    call = make_call(docs)

    def respond(messages: Sequence[Message]) -> str:
        present = {n for m in messages for n in facts_in(m["content"])}
        return "all clear" if len(present) != 1 else "one note is missing its pair"

    unsafe = CounterfactualPropagator(ScriptedModel(respond), verify="none")
    assert (await unsafe.propagate(call, "all clear", LAT)).label == LAT.bottom
    safe = await CounterfactualPropagator(ScriptedModel(respond)).propagate(call, "all clear", LAT)
    assert safe.label == CONFIDENTIAL | PUBLIC_UNTRUSTED
    assert any("leave-one-out changes" in e.reason for e in safe.evidence)


async def test_group_verification_removes_a_whole_label_at_once() -> None:
    docs = [doc(0, CONFIDENTIAL), doc(1, PUBLIC_UNTRUSTED), doc(2, PUBLIC_UNTRUSTED)]
    call = make_call(docs)
    model = ScriptedModel(responder({0}))
    output = answer_for([{"content": d.text} for d in docs], {0})
    item = await CounterfactualPropagator(model, strategy="search_first").propagate(
        call, output, LAT
    )
    model_g = ScriptedModel(responder({0}))
    group = await CounterfactualPropagator(model_g, verify="group").propagate(call, output, LAT)
    assert item.label == group.label == CONFIDENTIAL
    # full, bottom, {d1,d2}, {d0}; then one leave-one-out per item (2), or one per label,
    # which is the accepted {d0} sub-context again and so comes from the memo.
    assert (item.model_calls, group.model_calls) == (6, 4)


async def test_counterfactual_tolerates_small_wording_changes() -> None:
    """With a similarity threshold, an answer that differs by a word is still "the same"."""
    call, _, output = three_doc_case({0})

    def respond(messages: Sequence[Message]) -> str:
        answer = answer_for(messages, {0})
        return answer + (" indeed" if any(FACTS[1] in m["content"] for m in messages) else "")

    sim = Similarity(metric="rouge_l", threshold=0.8)
    model = ScriptedModel(respond)
    result = await CounterfactualPropagator(model, similarity=sim).propagate(call, output, LAT)
    assert result.label == CONFIDENTIAL


# --------------------------------------------------------------------------- soundness property


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[LabeledItem], set[int]]:
    count = draw(st.integers(1, len(FACTS)))
    labels = draw(st.lists(st.sampled_from(LABEL_POOL), min_size=count, max_size=count))
    influential = draw(st.sets(st.integers(0, count - 1)))
    return [doc(n, label) for n, label in enumerate(labels)], influential


def sound(label: Label, docs: Sequence[LabeledItem], influential: set[int]) -> bool:
    return all(docs[n].label.flows_to(label) for n in influential)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.sampled_from(["counterfactual", "similarity", "citation", "introspection"]))
async def test_no_propagator_drops_an_influential_document(case, name: str) -> None:
    docs, influential = case
    call = make_call(docs)
    output = answer_for([{"content": d.text} for d in docs], influential)
    # A model that lies about what it used: only the checks keep the label sound.
    model = ScriptedModel(responder(influential, used_reply="[doc:none] none"))
    opts = {"similarity": Similarity(threshold=1.0)} if name == "counterfactual" else {}
    prop = get_propagator(name, model=model, **opts)
    result = await prop.propagate(call, output, LAT)
    assert sound(result.label, docs, influential), result.to_dict()
    if name == "counterfactual":
        # Exactly the influential labels: the minimal label is found, not just a sound one.
        assert result.label == LAT.join_all(docs[n].label for n in influential)


# --------------------------------------------------------------------------- citation


async def test_citation_in_the_output_is_checked_and_used() -> None:
    call, model, output = three_doc_case({0})
    result = await CitationPropagator(model).propagate(call, output + " [doc:d0]", LAT)
    assert result.label == CONFIDENTIAL and not result.fell_back
    assert result.model_calls == 0


async def test_citation_by_name_or_number() -> None:
    call, model, output = three_doc_case({2})
    by_name = await CitationPropagator(model).propagate(call, output + " [doc:doc2]", LAT)
    by_number = await CitationPropagator(model).propagate(call, output + " [doc:3]", LAT)
    assert by_name.label == by_number.label == INTERNAL_WEB


async def test_fake_citation_falls_back() -> None:
    call, model, output = three_doc_case({0})
    result = await CitationPropagator(model).propagate(call, output + " [doc:d1]", LAT)
    assert result.fell_back and "shares no content" in result.reason
    assert result.label == join_label(call, LAT)


async def test_unknown_citation_falls_back() -> None:
    call, model, output = three_doc_case({0})
    result = await CitationPropagator(model).propagate(call, output + " [doc:d9]", LAT)
    assert result.fell_back and "names no input" in result.reason


async def test_missing_citations_fall_back_in_output_mode() -> None:
    call, model, output = three_doc_case({0})
    result = await CitationPropagator(model, mode="output").propagate(call, output, LAT)
    assert result.fell_back and result.reason == "no citations"


async def test_citations_asked_of_the_model() -> None:
    call, _, output = three_doc_case({1})
    model = ScriptedModel(responder({1}, used_reply="[doc:2]"))
    result = await CitationPropagator(model).propagate(call, output, LAT)
    assert result.label == PUBLIC_UNTRUSTED and result.model_calls == 1


async def test_uncited_copied_document_is_put_back() -> None:
    call, model, output = three_doc_case({0, 1})
    result = await CitationPropagator(model).propagate(call, output + " [doc:d0]", LAT)
    assert result.label == CONFIDENTIAL | PUBLIC_UNTRUSTED
    assert any(e.reason == "uncited but copied" and e.item_id == "d1" for e in result.evidence)


# --------------------------------------------------------------------------- similarity


async def test_similarity_keeps_the_document_the_words_come_from() -> None:
    call, _, output = three_doc_case({1})
    result = await SimilarityPropagator().propagate(call, output, LAT)
    assert result.label == PUBLIC_UNTRUSTED and result.model_calls == 0


async def test_similarity_falls_back_on_unattributable_output() -> None:
    call, _, _ = three_doc_case({1})
    output = "Purple elephants negotiate tariffs with seventeen submarines."
    result = await SimilarityPropagator().propagate(call, output, LAT)
    assert result.fell_back and "come from no input" in result.reason


async def test_similarity_output_from_the_question_alone_is_bottom() -> None:
    call, _, _ = three_doc_case(set())
    result = await SimilarityPropagator().propagate(call, "The notes say what?", LAT)
    assert result.label == LAT.bottom and not result.fell_back


# --------------------------------------------------------------------------- introspection


async def test_introspection_uses_the_models_numbers() -> None:
    call, _, output = three_doc_case({0})
    model = ScriptedModel(responder({0}))
    result = await IntrospectionPropagator(model).propagate(call, output, LAT)
    assert result.label == CONFIDENTIAL and result.model_calls == 1


@pytest.mark.parametrize("reply", ["I think the answer used the blue one", "7", "sources 0"])
async def test_introspection_parse_failure_falls_back(reply: str) -> None:
    call, _, output = three_doc_case({0})
    model = ScriptedModel(responder({0}, used_reply=reply))
    result = await IntrospectionPropagator(model).propagate(call, output, LAT)
    assert result.fell_back and result.label == join_label(call, LAT)


async def test_introspection_lie_is_caught_by_the_overlap_guard() -> None:
    call, _, output = three_doc_case({2})
    model = ScriptedModel(responder({2}, used_reply="1"))
    result = await IntrospectionPropagator(model).propagate(call, output, LAT)
    assert result.label == CONFIDENTIAL | INTERNAL_WEB
    assert "d1" in result.dropped


# --------------------------------------------------------------------------- registry


def test_registry_builds_every_propagator_and_rejects_bad_names() -> None:
    model = ScriptedModel(["x"])
    for name in PROPAGATORS:
        assert get_propagator(name, model=model).name == name
    with pytest.raises(ValueError, match="unknown propagator"):
        get_propagator("oracle")
    with pytest.raises(ValueError, match="model"):
        get_propagator("counterfactual")


async def test_propagation_serialises() -> None:
    call, model, output = three_doc_case({0})
    data = (await CounterfactualPropagator(model).propagate(call, output, LAT)).to_dict()
    assert data["label"]["confidentiality"] == "confidential"
    assert data["propagator"] == "counterfactual" and data["evidence"]


# --------------------------------------------------------------------------- real model


@pytest.mark.slow
@pytest.mark.skipif(not local_model_available(), reason="llama_cpp or the SmolLM2 GGUF missing")
async def test_counterfactual_with_the_local_model() -> None:
    from labelgate.guard.models import LocalModel

    model = LocalModel()
    secret = LabeledItem(
        "The launch code for project Kestrel is BLUE-42.", CONFIDENTIAL, role="user", id="k"
    )
    noise = LabeledItem(
        "Gardening tip: water tomatoes in the morning.", PUBLIC_UNTRUSTED, role="user", id="g"
    )
    for docs in ([secret, noise], [noise, secret]):
        question = LabeledItem(
            "What is the launch code for project Kestrel? Answer briefly.",
            LAT.bottom,
            role="user",
            id="q",
        )
        call = LLMCall(items=[*docs, question], params={"max_tokens": 32})
        full = await model.chat(
            [{"role": "user", "content": i.text} for i in call.items],
            temperature=0.0,
            seed=0,
            max_tokens=32,
        )
        result = await CounterfactualPropagator(model).propagate(call, full.text, LAT)
        assert result.model_calls >= 2
        # Whatever the small model answers, the verified label keeps every input whose
        # removal changes the answer: check that claim directly.
        for item in docs:
            if item.label.flows_to(result.label):
                continue
            rest = [i for i in call.items if i.id != item.id]
            again = await model.chat(
                [{"role": "user", "content": i.text} for i in rest],
                temperature=0.0,
                seed=0,
                max_tokens=32,
            )
            assert Similarity().same(again.text, full.text), result.to_dict()
