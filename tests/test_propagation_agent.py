"""The counterfactual propagator on agent-shaped contexts: several labeled tool results, a next
step that is a tool call using one or two of them.

The scripted agent's next step is a tool call whose argument values come from the results it
depends on, so influence is known exactly. Checks: the label keeps exactly those results;
the leave-one-out-first search spends fewer calls than the paper's bottom-up order and fits a
budget the latter does not; a changed argument value counts as a changed output.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelgate.guard.items import ItemKind, LabeledItem, LLMCall
from labelgate.guard.labels import Label, Lattice
from labelgate.guard.models import Message, ScriptedModel
from labelgate.guard.propagation import CounterfactualPropagator, join_label
from labelgate.guard.similarity import Similarity

LAT = Lattice()
WEB = LAT.label("public", "untrusted", sources=["web:search"])
CALENDAR = LAT.label("internal", "trusted", sources=["cal:team"])
CRM = LAT.label("confidential", "trusted", sources=["crm:sales"])
EMAIL = LAT.label("confidential", "untrusted", sources=["mail:inbox"], categories=["pii"])
RESULTS = [
    ("web_search", WEB, "Forecast: light snow.", "snow"),
    ("get_calendar", CALENDAR, "Room Birch is free at 14:00.", "Birch"),
    ("crm_lookup", CRM, "Account manager: Sanna Vik.", "Sanna"),
    ("read_email", EMAIL, "From: olli@supplier.example.", "olli@supplier.example"),
]


def agent_call() -> LLMCall:
    items = [
        LabeledItem("Reply with one tool call.", LAT.bottom, role="system", id="sys"),
        LabeledItem("Plan my Thursday.", LAT.bottom, role="user", id="task"),
    ]
    for n, (tool, label, text, _) in enumerate(RESULTS):
        items.append(
            LabeledItem(text, label, kind=ItemKind.TOOL_RESULT, role="tool", name=tool, id=f"r{n}")
        )
    items.append(LabeledItem("Next step, please.", LAT.bottom, role="user", id="next"))
    return LLMCall(items=items, params={"max_tokens": 32, "stop": ["\n"]})


def agent(uses: set[int]):
    """The next step: one argument per used result, its value taken from that result."""

    def respond(messages: Sequence[Message]) -> str:
        text = "\n".join(m["content"] for m in messages)
        args = [f"a{n}={RESULTS[n][3]}" for n in sorted(uses) if RESULTS[n][2] in text]
        return f"act({', '.join(args)})"

    return respond


def output_for(uses: set[int]) -> str:
    return agent(uses)([{"role": "user", "content": " ".join(r[2] for r in RESULTS)}])


def expected(uses: set[int]) -> Label:
    return LAT.join_all([LAT.bottom, *(RESULTS[n][1] for n in uses)])


@pytest.mark.parametrize("uses", [{1}, {3}, {1, 3}, {0, 2}])
async def test_agent_step_keeps_only_the_results_it_uses(uses: set[int]) -> None:
    call = agent_call()
    result = await CounterfactualPropagator(ScriptedModel(agent(uses))).propagate(
        call, output_for(uses), LAT
    )
    assert result.label == expected(uses)
    assert result.more_permissive_than(join_label(call, LAT))
    assert sorted(result.influential) == sorted(
        f"r{n}" for n in range(len(RESULTS)) if RESULTS[n][1].flows_to(result.label)
    )


async def test_loo_first_spends_fewer_calls_than_the_bottom_up_search() -> None:
    call, uses = agent_call(), {3}  # the email, the most restrictive label, is the one used
    output = output_for(uses)
    loo = await CounterfactualPropagator(ScriptedModel(agent(uses))).propagate(call, output, LAT)
    paper = await CounterfactualPropagator(
        ScriptedModel(agent(uses)), strategy="search_first"
    ).propagate(call, output, LAT)
    assert loo.label == paper.label == EMAIL
    # full + 4 leave-one-out + the floor's own sub-context (accepted at once).
    assert loo.model_calls == 6
    assert paper.model_calls > loo.model_calls
    tight = loo.model_calls
    fits = await CounterfactualPropagator(ScriptedModel(agent(uses)), budget=tight).propagate(
        call, output, LAT
    )
    over = await CounterfactualPropagator(
        ScriptedModel(agent(uses)), budget=tight, strategy="search_first"
    ).propagate(call, output, LAT)
    assert not fits.fell_back and fits.label == EMAIL
    assert over.fell_back and over.label == join_label(call, LAT)


async def test_a_changed_argument_value_is_a_changed_output() -> None:
    """Without the email the agent writes another recipient: the email must stay in the label,
    although ROUGE-L over the text would find the two calls 0.8 similar."""

    def respond(messages: Sequence[Message]) -> str:
        text = "\n".join(m["content"] for m in messages)
        to = "olli@supplier.example" if RESULTS[3][2] in text else "olli@supplier.example.com"
        return f"reply_email(to={to}, body=Confirmed for 18 March)"

    call = agent_call()
    output = respond([{"role": "user", "content": RESULTS[3][2]}])
    result = await CounterfactualPropagator(ScriptedModel(respond)).propagate(call, output, LAT)
    assert EMAIL.flows_to(result.label)
    assert result.label == EMAIL
    # The same search comparing the calls as plain text, values ignored, accepts a sub-context
    # without the email; the value guard every verdict goes through puts it back (the
    # address is a value of the output that only the email holds).
    plain = Similarity(tool_calls=False, values=False)
    blind = await CounterfactualPropagator(
        ScriptedModel(respond), similarity=plain, copy_guard=False
    ).propagate(call, output, LAT)
    assert EMAIL.flows_to(blind.label)
    assert blind.restored and "olli@supplier.example" in blind.restored[0].detail


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    uses=st.sets(st.integers(0, len(RESULTS) - 1)),
    strategy=st.sampled_from(["loo_first", "search_first"]),
)
async def test_never_unsound_on_agent_steps(uses: set[int], strategy: str) -> None:
    call = agent_call()
    prop = CounterfactualPropagator(ScriptedModel(agent(uses)), strategy=strategy)  # type: ignore[arg-type]
    result = await prop.propagate(call, output_for(uses), LAT)
    for n in uses:
        assert RESULTS[n][1].flows_to(result.label)
    assert result.label == expected(uses) or result.fell_back
