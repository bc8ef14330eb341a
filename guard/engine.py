"""The guard: label the inputs of a model call, label its output, decide at its sinks.

This is the one place that composes the parts (policy, fingerprints, propagation, argument
provenance), so the proxy and the evals make the same decisions for the same flows.

Lazy declassification: every output starts with the cheap conservative label (the join of its
inputs). A permissive propagator runs only when that label would make a sink decision stricter
than allow/log, and its verdict is cached for the same inputs and output.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel, ConfigDict

from labelgate.guard.argument_sources import ArgumentSources, argument_sources
from labelgate.guard.copies import Span, copied_spans, reduce_spans
from labelgate.guard.fingerprint.store import (
    FingerprintStore,
    LookupOptions,
    TextMeta,
    text_entry,
    text_fingerprint_set,
    text_word_kgrams,
)
from labelgate.guard.inflight import TextInFlight
from labelgate.guard.items import ItemKind, LabeledItem, LabelOrigin, LabelReason, LLMCall
from labelgate.guard.labels import Label, LabelSpec
from labelgate.guard.policy import Decision, LabelDecision, Policy, SinkFlow
from labelgate.guard.policy.events import CONTEXT
from labelgate.guard.policy.spec import Action, SinkKind, SourceKind
from labelgate.guard.propagation import Propagation, Propagator

_ITEM_KIND = {
    SourceKind.MESSAGE: ItemKind.MESSAGE_PART,
    SourceKind.AGENT_MESSAGE: ItemKind.MESSAGE_PART,
    SourceKind.TOOL_RESULT: ItemKind.TOOL_RESULT,
    SourceKind.DOCUMENT: ItemKind.DOCUMENT,
}
_PASSING = (Action.ALLOW, Action.LOG)


class InputSpec(BaseModel):
    """What the caller knows about one input: its text and where it came from."""

    model_config = ConfigDict(extra="forbid")

    text: str
    role: str = "user"
    kind: SourceKind = SourceKind.MESSAGE
    tool: str | None = None
    source: str | None = None
    url: str | None = None
    asserted: LabelSpec | None = None  # a client annotation, checked against the policy
    # ``tool``/``source``/``url`` vouched for by a trusted party (a key's ``may_raise``); else
    # the client's claim, which may make the label stricter, never looser
    vouched: bool = False


class ToolCallSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    arguments: dict[str, Any] | str


@dataclass(slots=True)
class ToolCallReview:
    call: ToolCallSpec
    arguments: dict[str, Any]
    provenance: dict[str, ArgumentSources]
    decision: Decision


@dataclass(slots=True)
class Review:
    """The guard's verdict on one model answer."""

    label: Label  # the output's label (permissive when a propagator ran and succeeded)
    join: Label  # the conservative label, for the record
    response: Decision | None  # the answer's text, bound for the recipient
    tool_calls: list[ToolCallReview] = field(default_factory=list)
    propagation: Propagation | None = None

    @property
    def decisions(self) -> list[Decision]:
        found = [self.response] if self.response else []
        return found + [t.decision for t in self.tool_calls]


@dataclass(slots=True)
class Prepared:
    """What a review decides before the answer exists: the inputs' join and, when no rule
    for the answer's sink reads its text, the decision for the answer's text (its own copy)."""

    call: LLMCall
    join: Label
    agent: str | None
    recipient: str | None
    response: Decision | None


def parse_arguments(arguments: dict[str, Any] | str) -> dict[str, Any]:
    """Tool-call arguments as a dict; text that is not a JSON object is kept under ``_raw``."""
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return {"_raw": arguments}
    return parsed if isinstance(parsed, dict) else {"_raw": parsed}


class Guard:
    def __init__(
        self,
        policy: Policy,
        *,
        fingerprints: FingerprintStore | None = None,
        propagator: Propagator | None = None,
        lookup: LookupOptions | None = None,
        cache_size: int = 1024,
    ) -> None:
        self.policy = policy
        self.lattice = policy.lattice
        self.fingerprints = fingerprints
        self.propagator = propagator
        # The label is the join of every match, and one reason per label says why (with how
        # many stored texts it stands for): a phrase shared by hundreds of stored answers
        # would otherwise make hundreds of matches, and of provenance entries.
        self._lookup = lookup or LookupOptions(one_per_label=True)
        self._cache: OrderedDict[str, Propagation] = OrderedDict()
        self._cache_size = cache_size

    # ---------------------------------------------------------------- inputs

    def label_input(
        self,
        spec: InputSpec,
        *,
        agent: str | None = None,
        key: str | None = None,
        in_flight: Iterable[TextInFlight] = (),
    ) -> LabeledItem:
        """Source rules, then the client's annotation, then re-identification (joined): of
        stored texts, and of ``in_flight`` texts (``guard.inflight``) the item relays."""
        decided = self.source_decision(spec, agent)
        label, provenance = decided.label, list(decided.provenance)
        if spec.asserted is not None:
            annotated = self.policy.annotate(agent, label, self.lattice.parse(spec.asserted), key)
            label = annotated.label
            provenance += annotated.provenance
        for match in self._reidentify(spec.text):
            label = label | match.label
            provenance.append(match.provenance())
        for flight, shared in self._relayed(spec.text, in_flight):
            if not flight.bound.flows_to(label):  # else it says nothing the label does not
                label = label | flight.bound
                provenance.append(flight.provenance(shared))
        return LabeledItem(
            text=spec.text,
            label=label,
            kind=_ITEM_KIND[spec.kind],
            role=spec.role,
            name=spec.tool or spec.source or spec.url,
            provenance=provenance,
        )

    def source_decision(self, spec: InputSpec, agent: str | None) -> LabelDecision:
        """The policy's source rules (then endorse/declassify) for ``spec`` read by ``agent``;
        ``agent=None``: the label the text carries wherever it goes (rules keyed to a reader
        say what that reader may do with it, not what the text is)."""
        return self.policy.source_label(
            spec.kind,
            tool=spec.tool,
            source=spec.source,
            url=spec.url,
            agent=agent,
            role=spec.role,
            vouched=spec.vouched,
        )

    def _relayed(
        self, text: str, in_flight: Iterable[TextInFlight]
    ) -> list[tuple[TextInFlight, int]]:
        flights = list(in_flight)
        if not flights or self.fingerprints is None or not text.strip():
            return []
        mine = text_fingerprint_set(text, self.fingerprints.params)
        shared = [(flight, flight.relayed_in(mine, self._lookup.min_matches)) for flight in flights]
        return [(flight, n) for flight, n in shared if n]

    def in_flight(
        self, sent: Callable[[], list[str]], bound: Label, *, ref: str, reader: str | None
    ) -> TextInFlight | None:
        """A text going out before its label is final (``sent()``: what has gone out, per
        choice; ``bound``: the most its label can be), for ``label_input``; None without a
        fingerprint store (then nothing is re-identified at all)."""
        store = self.fingerprints
        if store is None:
            return None
        return TextInFlight(sent, bound, ref=ref, reader=reader, params=store.params)

    def is_stored(self, text_id: str | None) -> bool:
        """Is ``text_id`` a text in the fingerprint store (not, e.g., an answer in flight)?"""
        store = self.fingerprints
        return store is not None and text_id is not None and store.get(text_id) is not None

    def untrusted_copies(self, text: str) -> list[Span] | None:
        """The lines of ``text`` that copy stored texts below the required integrity, when
        the rest of it copies none (``guard.copies``); None when they cannot be told apart
        (no store, nothing located, or the rest is re-identified too)."""
        store = self.fingerprints
        if store is None:
            return None
        need = self.policy.required_integrity

        def low(label: Label) -> bool:
            return label.integrity < need

        spans = copied_spans(store, text, low)
        if not spans:
            return None
        rest = reduce_spans(text, spans, lambda _: "\n")
        if any(low(match.label) for match in self._reidentify(rest)):
            return None
        return spans

    def _reidentify(self, text: str) -> list[Any]:
        if self.fingerprints is None or not text.strip():
            return []
        return self.fingerprints.lookup(text, options=self._lookup)

    def remember(
        self,
        text: str,
        label: Label,
        *,
        kind: ItemKind = ItemKind.OUTPUT,
        source: str | None = None,
    ) -> str | None:
        """Fingerprint a labeled text so it keeps its label when it shows up again.

        Bottom-labeled text is not stored: re-identifying it could never change a label.
        """
        if self.fingerprints is None or not self.worth_remembering(text, label):
            return None
        return self.fingerprints.add_text(text, label, meta=TextMeta(kind=kind, source=source))

    def remember_many(
        self,
        texts: Sequence[tuple[str, Label, str | None]],
        *,
        kind: ItemKind = ItemKind.OUTPUT,
        borrowed: Sequence[Sequence[str]] = (),
    ) -> int:
        """``remember`` for several (text, label, source), in one write; how many were new.
        ``borrowed[i]``: texts the i-th may quote without owning their words
        (``text_entry``); a text left with no fingerprint of its own is not stored."""
        store = self.fingerprints
        if store is None:
            return 0
        entries = [
            text_entry(
                text,
                label,
                store.params,
                meta=TextMeta(kind=kind, source=source),
                borrowed=borrowed[i] if i < len(borrowed) else (),
            )
            for i, (text, label, source) in enumerate(texts)
            if self.worth_remembering(text, label)
        ]
        entries = [e for e in entries if len(e.fingerprints)]
        return store.add_many(entries) if entries else 0

    def worth_remembering(self, text: str, label: Label) -> bool:
        """Would ``remember`` store anything, were the text new? (A fingerprint store, text
        that is not blank, a label above the bottom.) Cheap: nothing is fingerprinted."""
        return (
            self.fingerprints is not None
            and bool(text.strip())
            and not label.flows_to(self.lattice.bottom)
        )

    def could_reidentify(self, stored: str, texts: Iterable[str]) -> bool:
        """Could labeling ``texts`` find ``stored`` (once it is stored)? False only when they
        share no word k-gram with it: a match needs shared fingerprints, which are hashes of
        shared k-grams. Then nobody labeling ``texts`` need wait for ``stored`` to be written.
        The test compares words, not fingerprints: it runs on the event loop, for every
        request while an answer is being stored, and winnowing both cost ten times as much."""
        store = self.fingerprints
        if store is None or not stored.strip():
            return False
        mine = text_word_kgrams(stored, store.params)
        return any(not mine.isdisjoint(text_word_kgrams(t, store.params)) for t in texts)

    # ---------------------------------------------------------------- the prompt sink

    @property
    def screens_prompts(self) -> bool:
        """Does the policy decide prompt items? When not, ``screen`` need not be called."""
        return self.policy.screens_prompts

    def screen(self, items: Sequence[LabeledItem], *, agent: str | None) -> list[Decision]:
        """Decide each input item at the ``prompt`` sink, for the agent about to read it.

        One decision per item, in order: allow/log pass the item (with the decision's
        ``notice`` before it, if any), redact replaces its redaction targets, deny withholds
        it; what happens is the caller's to enforce. The policy's engine fails closed, so an
        error is a deny.
        """
        return [
            self.policy.decide(
                SinkFlow(
                    SinkKind.PROMPT, item.label, {"content": (item.text, item.label)}, agent=agent
                )
            )
            for item in items
        ]

    # ---------------------------------------------------------------- outputs

    def prepare(
        self, call: LLMCall, *, agent: str | None = None, recipient: str | None = None
    ) -> Prepared:
        """The part of ``review`` that does not depend on the answer, to run while it is
        awaited; ``review(..., prepared=)`` uses it."""
        join = self.lattice.join_all(item.label for item in call.items)
        response = None
        if not self.policy.reads_values(SinkKind.RESPONSE):
            response = self.policy.decide(
                SinkFlow(
                    SinkKind.RESPONSE,
                    join,
                    {"content": ("", join)},
                    agent=agent,
                    recipient=recipient,
                )
            )
        return Prepared(call, join, agent, recipient, response)

    async def review(
        self,
        call: LLMCall,
        text: str,
        tool_calls: Sequence[ToolCallSpec] = (),
        *,
        agent: str | None = None,
        recipient: str | None = None,
        propagator: Propagator | None = None,
        eager: bool = False,
        prepared: Prepared | None = None,
    ) -> Review:
        """Label the answer and decide each of its sinks; permissive only when it matters.

        ``propagator`` overrides the guard's own for this call (e.g. one that re-queries the
        model the request went to). ``eager`` runs it even when every decision passes, for
        callers that need the most precise label (e.g. to mark rather than block).
        ``prepared`` (from ``prepare`` with the same call, agent and recipient) saves deciding
        again what did not depend on the answer.
        """
        propagator = propagator or self.propagator
        ready = prepared if _prepared_for(prepared, call, agent, recipient) else None
        join = ready.join if ready else self.lattice.join_all(item.label for item in call.items)
        answer = ready.response if ready else None
        review = self._decide(call, join, join, text, tool_calls, agent, recipient, answer)
        passing = all(d.action in _PASSING for d in review.decisions)
        if propagator is None or (passing and not eager):
            return review
        propagation = await self._propagate(propagator, call, _rendered_output(text, tool_calls))
        if propagation.label == join:
            review.propagation = propagation
            return review
        # Arguments are still traced through every input: a value (or a word of one) that only
        # an input the propagator dropped holds came from there, whatever its verdict on the
        # whole answer; what is found nowhere gets the permissive label.
        permissive = self._decide(call, propagation.label, join, text, tool_calls, agent, recipient)
        permissive.propagation = propagation
        return permissive

    def _decide(
        self,
        call: LLMCall,
        label: Label,
        join: Label,
        text: str,
        tool_calls: Sequence[ToolCallSpec],
        agent: str | None,
        recipient: str | None,
        decided: Decision | None = None,
    ) -> Review:
        """The decisions at the answer's sinks; ``decided``: the text's, if already made."""
        response = None
        if text.strip():
            response = decided or self.policy.decide(
                SinkFlow(
                    SinkKind.RESPONSE,
                    label,
                    {"content": (text, label)},
                    agent=agent,
                    recipient=recipient,
                )
            )
        reviews = [self._tool_call(call, label, tc, agent) for tc in tool_calls]
        return Review(label=label, join=join, response=response, tool_calls=reviews)

    def _tool_call(
        self, call: LLMCall, label: Label, spec: ToolCallSpec, agent: str | None
    ) -> ToolCallReview:
        arguments = parse_arguments(spec.arguments)
        # A value (or part) found in no input was written by the model, after reading every
        # input that ``label`` keeps: it gets the output's label (guard.argument_sources).
        provenance = argument_sources(arguments, call.items, self.lattice, unmatched_label=label)
        by_id = {item.id: item for item in call.items}
        # The inputs that could have steered what the model wrote: those the label keeps.
        steering = tuple(
            i.label
            for i in call.items
            if i.label.flows_to(label) and not i.label.flows_to(self.lattice.bottom)
        )
        arg_labels: dict[str, tuple[Any, Label]] = {}
        origins: dict[str, tuple[Label, ...]] = {CONTEXT: steering}
        for path, prov in provenance.items():
            arg_labels[path] = (prov.value, prov.label)
            came = tuple(by_id[i].label for i in prov.item_ids if i in by_id)
            origins[path] = came + steering if prov.unmatched else came
        decision = self.policy.decide(
            SinkFlow(
                SinkKind.TOOL_CALL,
                label,
                arg_labels,
                agent=agent,
                tool=spec.name,
                origins=origins,
            )
        )
        return ToolCallReview(spec, arguments, provenance, decision)

    def review_data_only(
        self, call: LLMCall, spec: ToolCallSpec, agent: str | None, why: str
    ) -> ToolCallReview:
        """Decide a tool call again as if its untrusted inputs had the required integrity:
        for a call the model proposed again with those inputs reduced to their data
        (``guard.dataonly``), they filled it but did not choose it. Only integrity changes
        (each such input records ``why``); confidentiality and every rule still apply."""
        need = self.policy.required_integrity
        items = [
            item
            if item.label.integrity >= need
            else replace(
                item,
                label=Label(
                    item.label.confidentiality,
                    need,
                    item.label.readers,
                    item.label.categories,
                    item.label.sources,
                ),
                provenance=[*item.provenance, LabelReason(LabelOrigin.ENDORSE, why)],
            )
            for item in call.items
        ]
        endorsed = LLMCall(items, call.model, call.params)
        label = self.lattice.join_all(item.label for item in items)
        return self._tool_call(endorsed, label, spec, agent)

    async def _propagate(self, propagator: Propagator, call: LLMCall, output: str) -> Propagation:
        key = f"{propagator.name}:{_cache_key(call, output)}"
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        result = await propagator.propagate(call, output, self.lattice)
        self._cache[key] = result
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return result


def _prepared_for(
    prepared: Prepared | None, call: LLMCall, agent: str | None, recipient: str | None
) -> bool:
    return (
        prepared is not None
        and prepared.call is call
        and (prepared.agent, prepared.recipient) == (agent, recipient)
    )


def _rendered_output(text: str, tool_calls: Sequence[ToolCallSpec]) -> str:
    """What the propagator compares: the text and every tool call, name and arguments."""
    calls = [
        f"{tc.name}({json.dumps(parse_arguments(tc.arguments), sort_keys=True)})"
        for tc in tool_calls
    ]
    return "\n".join([text, *calls]).strip()


def _cache_key(call: LLMCall, output: str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for item in call.items:
        digest.update(json.dumps([item.role, item.text, item.label.to_dict()]).encode())
    digest.update(output.encode())
    return digest.hexdigest()


def propagation_provenance(propagation: Propagation) -> LabelReason:
    """How an output got its label, for the audit record."""
    how = "fell back to the join" if propagation.fell_back else "permissive"
    detail = (
        f"{propagation.propagator}: {how}; kept {len(propagation.influential)} input(s), "
        f"dropped {len(propagation.dropped)}"
    )
    if propagation.reason:
        detail += f" ({propagation.reason})"
    for restored in propagation.restored[:3]:  # which value kept which input: the value guard
        detail += f"; {restored.detail}"
    if len(propagation.restored) > 3:
        detail += f"; and {len(propagation.restored) - 3} more"
    return LabelReason(LabelOrigin.PROPAGATION, detail, ref=propagation.propagator)
