"""Control vs data: the data-only replay of a tool call the guard would deny for integrity.

A side effect is denied when untrusted data reached it (``baseline:untrusted-side-effect``,
``baseline:outward-argument``). That stops an injected instruction from choosing a call, and
also every call whose arguments the user *asked* to take from a tool (the amount on the
invoice, the branch of the pull request). The two differ in what the model read: an injected
call needs the injected prose; a requested one needs only the values. So the proxy asks the
same model again, with the same conversation and tools, but every untrusted input reduced to
its data (``guard.dataonly``: values and identifiers, no sentences). If the model proposes the
same call (same tool, same arguments), the untrusted inputs filled it but did not choose it,
and the call is decided again with their integrity lifted (``Guard.review_data_only``): the
confidentiality rules still apply. Otherwise the denial stands.

One re-query per answer at most (it covers every denied call of the answer), through the
request's own deployment; its count goes into the decision's reason and the audit record.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from labelgate.guard.argument_sources import leaves
from labelgate.guard.copies import reduce_spans
from labelgate.guard.dataonly import copied_phrases, data_only
from labelgate.guard.engine import (
    Guard,
    InputSpec,
    Review,
    ToolCallReview,
    ToolCallSpec,
    parse_arguments,
)
from labelgate.guard.items import ItemKind, LabeledItem, LabelOrigin, LLMCall
from labelgate.guard.policy import Action
from labelgate.proxy.router import Router
from labelgate.proxy.schemas import ChatCompletionRequest
from labelgate.proxy.screening import positions, rewrite_position

log = logging.getLogger("labelgate.proxy")

# The denials a replay may lift: integrity only (who chose the call), never clearance.
REPLAYABLE = frozenset({"baseline:untrusted-side-effect", "baseline:outward-argument"})
WHY = "the call was proposed again with this input reduced to its data: it filled, not chose"


def replayable(review: Review) -> list[int]:
    """The tool calls of ``review`` denied for integrity alone."""
    return [
        i
        for i, tc in enumerate(review.tool_calls)
        if tc.decision.action is Action.DENY and tc.decision.rule in REPLAYABLE
    ]


def data_only_request(
    request: ChatCompletionRequest,
    call: LLMCall,
    guard: Guard,
    agent: str | None = None,
    values: Sequence[str] = (),
) -> ChatCompletionRequest | None:
    """The request with every untrusted input's text reduced to its data (and the phrases
    it shares with ``values``, the denied calls' arguments); None when the inputs cannot be
    lined up with the request's texts (then nothing is replayed)."""
    places = positions(request.messages)
    if len(places) != len(call.items):
        return None
    need = guard.policy.required_integrity
    messages = list(request.messages)
    for (pos, _), item in zip(places, call.items, strict=True):
        if item.label.integrity < need and pos.kind in ("content", "part"):
            keep = [p for value in values for p in copied_phrases(value, item.text)]
            rewrite_position(messages, pos, reduced(guard, item, agent, keep))
    return request.model_copy(update={"messages": messages})


def argument_texts(request: ChatCompletionRequest, review: Review, denied: list[int]) -> list[str]:
    """The text of every argument value of the ``denied`` calls, and of the calls the
    model made earlier in the conversation (their values are in it already, as its own)."""
    calls = [review.tool_calls[i].call.arguments for i in denied]
    for message in request.messages:
        calls += [tc.function.arguments or "{}" for tc in message.tool_calls or []]
    found = []
    for arguments in calls:
        for _, leaf in leaves(parse_arguments(arguments)):
            if isinstance(leaf, str | int | float) and not isinstance(leaf, bool):
                found.append(str(leaf))
    return list(dict.fromkeys(found))


def reduced(guard: Guard, item: LabeledItem, agent: str | None, keep: list[str]) -> str:
    """An untrusted input as the replay shows it: reduced to its data and the phrases the
    denied calls copied from it, whole; except a client's own message (trusted by the source
    rules, no annotation) that is untrusted only because it quotes untrusted texts seen
    before: then only the quoted lines are reduced, and the client's words (the user's
    request an orchestrator passes on) stay."""

    def reduce(text: str) -> str:
        return data_only(text, keep)

    spans = guard.untrusted_copies(item.text) if _client_words(guard, item, agent) else None
    return reduce(item.text) if spans is None else reduce_spans(item.text, spans, reduce)


def _client_words(guard: Guard, item: LabeledItem, agent: str | None) -> bool:
    if item.kind is not ItemKind.MESSAGE_PART or item.role not in ("system", "user"):
        return False
    for reason in item.provenance:
        if reason.origin is LabelOrigin.ANNOTATION:
            return False
        # a relay of an answer still being sent has no stored fingerprints to locate it by
        if reason.origin is LabelOrigin.FINGERPRINT and not guard.is_stored(reason.ref):
            return False
    spec = InputSpec(text=item.text, role=item.role)
    return guard.source_decision(spec, agent).label.integrity >= guard.policy.required_integrity


async def proposed_again(router: Router, request: ChatCompletionRequest) -> list[dict[str, Any]]:
    """The tool calls the model proposes for the data-only request (its first choice)."""
    body = request.upstream_body(request.model)
    body.pop("stream", None)
    body.pop("stream_options", None)
    body["n"] = 1
    answer = await router.complete(request.model, body)
    message = answer["choices"][0]["message"]
    return list(message.get("tool_calls") or [])


def same_call(spec: ToolCallSpec, raw: dict[str, Any]) -> bool:
    function = raw.get("function") or {}
    if function.get("name") != spec.name:
        return False
    return parse_arguments(function.get("arguments") or "{}") == parse_arguments(spec.arguments)


async def replay_denied(
    guard: Guard,
    router: Router,
    request: ChatCompletionRequest,
    call: LLMCall,
    review: Review,
    agent: str | None,
) -> int:
    """Lift the integrity denials of calls the model proposes again on data only; returns the
    number of model calls made (0 or 1). A replay that fails leaves the denials as they are."""
    denied = replayable(review)
    if not denied:
        return 0
    again = data_only_request(request, call, guard, agent, argument_texts(request, review, denied))
    if again is None:
        return 0
    try:
        proposed = await proposed_again(router, again)
    except Exception:  # the denial stands: fail closed
        log.warning("data-only replay failed", exc_info=True)
        return 1
    for i in denied:
        spec = review.tool_calls[i].call
        if any(same_call(spec, raw) for raw in proposed):
            lifted: ToolCallReview = guard.review_data_only(call, spec, agent, WHY)
            lifted.decision.reason += " (after a data-only replay: 1 model call)"
            review.tool_calls[i] = lifted
    return 1
