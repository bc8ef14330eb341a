"""The label guard as a proxy hook: label the request's items, review the answer, enforce.

- before the call: every message part becomes a labeled item (policy source rules, the
  client's annotations from the ``labelgate`` extension field, re-identification);
- after the call: the guard labels the answer (lazily permissive), decides the response and
  each tool call, and the hook applies the verdicts: a denied tool call is removed and replaced
  by a note the agent can read (or the request fails, per ``deny_mode``), redactions are
  applied, ``ask`` waits for a person. The answer is fingerprinted with its label so it keeps
  it when another agent quotes it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labelgate.guard.engine import (
    Guard,
    InputSpec,
    Prepared,
    Review,
    ToolCallSpec,
    parse_arguments,
)
from labelgate.guard.inflight import TextInFlight
from labelgate.guard.items import ItemKind, LabeledItem, LabelOrigin, LLMCall
from labelgate.guard.labels import Label, LabelSpec, Lattice
from labelgate.guard.models import ChatResult, Message
from labelgate.guard.policy import Action, Decision, SinkFlow, redact_value
from labelgate.guard.policy.spec import SinkKind, SourceKind
from labelgate.guard.propagation import Propagation, Propagator, get_propagator
from labelgate.proxy.approvals import ApprovalQueue, Approvals
from labelgate.proxy.context import RequestContext
from labelgate.proxy.errors import bad_request, guard_error, state_unavailable
from labelgate.proxy.hook import (
    ChatCompletion,
    GatewayHook,
    GuardedResponse,
    Later,
    Outcome,
    PolicyDenied,
)
from labelgate.proxy.recording import GUARD_CALLS_HEADER, Recorder, guard_model_calls, targets
from labelgate.proxy.remembering import AnswerFingerprints
from labelgate.proxy.replay import replay_denied
from labelgate.proxy.router import Router
from labelgate.proxy.schemas import (
    ChatCompletionRequest,
    ChatMessage,
    EmbeddingRequest,
    validation_error,
)
from labelgate.proxy.screening import EAGER_KEY, message_positions, screen_request
from labelgate.proxy.screening import summaries as screened_summaries
from labelgate.proxy.streaming import HeldStream

DenyMode = Literal["replace", "error"]

NOTE_PREFIX = "[labelgate]"


log = logging.getLogger("labelgate.proxy")


class MessageAnnotation(BaseModel):
    """What a client says about one of its messages (by index in ``messages``)."""

    model_config = ConfigDict(extra="forbid")

    kind: SourceKind | None = None  # e.g. "document" for retrieved text pasted in a message
    tool: str | None = None
    source: str | None = None
    url: str | None = None
    label: LabelSpec | None = None  # may raise the label; lowering needs a trusted key


class Extension(BaseModel):
    """The ``labelgate`` request field (documented in docs/proxy.md)."""

    model_config = ConfigDict(extra="forbid")

    messages: dict[int, MessageAnnotation] = Field(default_factory=dict)
    recipient: str | None = None  # the agent the answer is for (default: the caller)
    key: str | None = None  # proves the right to lower labels, where the policy allows it


class RouterModel:
    """A ChatModel over the proxy's own router, for propagators' re-queries.

    ``extra`` (the request's tools, tool_choice, response_format) goes with every re-query,
    and tool calls come back rendered as ``name({sorted json args})``, the form the guard
    compares, so a re-query can reproduce a tool call, not only text.
    """

    def __init__(self, router: Router, model: str, extra: dict[str, Any] | None = None) -> None:
        self.name = model
        self._router = router
        self._extra = extra or {}

    async def chat(self, messages: Sequence[Message], **params: Any) -> ChatResult:
        body = {**self._extra, "messages": list(messages), **params}
        answer = await self._router.complete(self.name, body)
        message = answer["choices"][0]["message"]
        calls = [_tool_call_spec(tc) for tc in message.get("tool_calls") or []]
        return ChatResult(text=rendered_output(_text_of(message.get("content")), calls))


class _Deferred:
    """A propagator built on first use: most answers pass on the join and never need one."""

    def __init__(self, name: str, build: Callable[[], Propagator]) -> None:
        self.name = name
        self._build = build

    async def propagate(self, call: LLMCall, output: str, lattice: Lattice) -> Propagation:
        return await self._build().propagate(call, output, lattice)


class PolicyHook(GatewayHook):
    """The label guard on the gateway: labels each request's inputs with the ``Guard``,
    reviews its answer at the policy's sinks, fingerprints answers, records everything."""

    def __init__(
        self,
        guard: Guard,
        router: Router | None = None,
        *,
        propagator: str = "join",
        propagator_model: str | None = None,
        propagator_options: dict[str, Any] | None = None,
        deny_mode: DenyMode = "replace",
        approvals: ApprovalQueue | None = None,
        recorder: Recorder | None = None,
        replay: bool = True,
        read_your_writes: bool = False,
    ) -> None:
        self.guard = guard
        self._router = router
        self.replay = replay  # the data-only replay of calls denied for integrity
        self._propagator_name = propagator
        self._propagator_model = propagator_model
        self._propagator_options = propagator_options or {}
        self.deny_mode = deny_mode
        self.approvals: ApprovalQueue = approvals or Approvals()
        self.recorder = recorder or Recorder()
        self.answers = AnswerFingerprints(guard)
        # Replicas sharing a store (state.read_your_writes): an answer leaves once stored, and
        # a request is labeled once its replica has loaded what the others stored before it.
        self.read_your_writes = read_your_writes
        self.in_flight: set[TextInFlight] = set()  # streamed answers not yet fingerprinted

    # ------------------------------------------------------------ before

    async def before_call(
        self, ctx: RequestContext, request: ChatCompletionRequest
    ) -> ChatCompletionRequest:
        ext = self._extension(request.labelgate)
        ctx.state["extension"] = ext
        ctx.state["recipient"] = ext.recipient or ctx.caller.agent_id
        if not self.guard.screens_prompts and not ext.messages:
            # Nothing decides what is sent and no assertion can refuse the request: the inputs
            # are labeled while the upstream call is out (``pending``), or by ``after_call``.
            self._check_store()
            ctx.state[_UNLABELED] = request
            return request
        await self._answers_fingerprinted(lambda: self._texts(ctx, request))
        items = self._label_inputs(ctx, request)
        # The prompt sink (a no-op without prompt rules): withheld items are no longer inputs.
        request, items = await screen_request(
            self.guard, ctx, request, items, approvals=self.approvals, deny_mode=self.deny_mode
        )
        self._inputs_labeled(ctx, request, items)
        return request

    def pending(self, ctx: RequestContext) -> Callable[[], Later] | None:
        """The labeling ``before_call`` left for while the upstream call is out, if any."""
        return partial(self._label_during, ctx) if _UNLABELED in ctx.state else None

    def _label_during(self, ctx: RequestContext) -> Later:
        """Label the inputs now, unless they could relay an answer still being stored: then
        what is left, to await once the upstream has answered (``_label_settled``)."""
        request: ChatCompletionRequest = ctx.state[_UNLABELED]
        if self.read_your_writes or self.answers.unsettled(lambda: self._texts(ctx, request)):
            return partial(self._label_settled, ctx)
        self._label_unlabeled(ctx)
        return None

    async def _label_settled(self, ctx: RequestContext) -> None:
        """Label the inputs left unlabeled, once the answers they could relay are stored."""
        request: ChatCompletionRequest | None = ctx.state.get(_UNLABELED)
        if request is not None:
            await self._answers_fingerprinted(lambda: self._texts(ctx, request))
            self._label_unlabeled(ctx)

    def _label_unlabeled(self, ctx: RequestContext) -> None:
        request: ChatCompletionRequest | None = ctx.state.pop(_UNLABELED, None)
        if request is not None:
            self._inputs_labeled(ctx, request, self._label_inputs(ctx, request))

    def _texts(self, ctx: RequestContext, request: ChatCompletionRequest) -> list[str]:
        return [spec.text for spec in self._specs(ctx, request)]

    def _label_inputs(
        self, ctx: RequestContext, request: ChatCompletionRequest
    ) -> list[LabeledItem]:
        ext: Extension = ctx.state["extension"]
        agent = ctx.caller.agent_id
        specs = self._specs(ctx, request)
        items = [
            self.guard.label_input(spec, agent=agent, key=ext.key, in_flight=self.in_flight)
            for spec in specs
        ]
        ctx.state["items"] = items
        # Texts from outside (tool results, documents) are fingerprinted like answers: re-sent
        # later as a user message, they keep their label. Other agents' messages are not: an
        # agent talking through the proxy had its answer fingerprinted when it left, with the
        # label of what it read (a second copy, labelled as the reader saw it, only adds the
        # reader's view to every later copy: measured by the spread eval's control runs).
        for spec, item in zip(specs, items, strict=True):
            if spec.kind in _OUTSIDE_TEXT:
                self.answers.add(item.text, self._origin_label(spec), agent)
        return items

    def _own_words(self, call: LLMCall) -> tuple[str, ...]:
        """The prompt's public words of the client's own (system and user messages labelled
        by no more than the source rules, with a public, category-free origin): an answer
        may quote them without owning them, so their k-grams are not fingerprinted with it
        (a later text quoting the same prompt is not a copy of the answer). Words that
        carry any other label stay the answer's."""
        lattice = self.guard.lattice
        own = []
        for item in call.items:
            if item.kind is not ItemKind.MESSAGE_PART or item.role not in ("system", "user"):
                continue
            if any(r.origin not in _OWN_ORIGINS for r in item.provenance):
                continue
            origin = self.guard.policy.source_label(SourceKind.MESSAGE, role=item.role).label
            public = origin.confidentiality == lattice.bottom.confidentiality
            if public and not origin.categories and origin.readers is None:
                own.append(item.text)
        return tuple(own)

    def _origin_label(self, spec: InputSpec) -> Label:
        """The label an outside text carries wherever it goes. Texts it relays were stored
        with their own labels."""
        return self.guard.source_decision(spec, agent=None).label

    def _specs(self, ctx: RequestContext, request: ChatCompletionRequest) -> list[InputSpec]:
        """The request's input items, made once per request (screening makes a new one)."""
        made: tuple[ChatCompletionRequest, list[InputSpec]] | None = ctx.state.get(_SPECS)
        if made is not None and made[0] is request:
            return made[1]
        specs = input_specs(request.messages, ctx.state["extension"], ctx.caller.may_raise)
        ctx.state[_SPECS] = (request, specs)
        return specs

    def _inputs_labeled(
        self, ctx: RequestContext, request: ChatCompletionRequest, items: list[LabeledItem]
    ) -> None:
        """The call as the guard reviews it (the inputs that reached the model), and what its
        review can decide before the answer."""
        call = LLMCall(items, model=request.model, params=_params(request))
        agent, recipient = ctx.caller.agent_id, ctx.state["extension"].recipient
        prepared = self.guard.prepare(call, agent=agent, recipient=recipient)
        ctx.state["call"], ctx.state[_PREPARED] = call, prepared
        if ctx.stream:
            ctx.hold_text = not self._text_may_stream(prepared)

    async def before_embeddings(self, ctx: RequestContext, request: EmbeddingRequest) -> None:
        """Embedded texts are inputs too: labeled (and re-identified) for the record."""
        texts = [request.input] if isinstance(request.input, str) else request.input
        await self._answers_fingerprinted(lambda: [text for text in texts if isinstance(text, str)])
        agent = ctx.caller.agent_id
        ctx.state["items"] = [
            self.guard.label_input(InputSpec(text=text), agent=agent, in_flight=self.in_flight)
            for text in texts
            if isinstance(text, str)  # token arrays carry no text to label
        ]

    def _extension(self, raw: dict[str, Any] | None) -> Extension:
        try:
            ext = Extension.model_validate(raw or {})
        except ValidationError as exc:
            raise validation_error(exc, raw or {}, "labelgate.") from None
        for index, note in ext.messages.items():
            self.check_label(note.label, f"labelgate.messages.{index}.label")
        return ext

    def check_label(self, spec: LabelSpec | None, where: str) -> None:
        """A client's label names levels and categories of the policy's lattice, or the
        request is refused: 400 naming the field ``where``."""
        if spec is None:
            return
        try:
            self.guard.lattice.parse(spec)
        except (ValueError, KeyError) as exc:
            raise bad_request(f"{where}: {exc}", param=where, code="invalid_value") from None

    def _text_may_stream(self, prepared: Prepared) -> bool:
        """Could the answer's text pass unchanged? Decided on the join of the inputs, which
        bounds the answer's label from above; when it could not, the stream holds the text."""
        decision = prepared.response
        if decision is None:  # the rules read the text: decide with none
            join = prepared.join
            probe = SinkFlow(
                SinkKind.RESPONSE,
                join,
                {"content": ("", join)},
                agent=prepared.agent,
                recipient=prepared.recipient,
            )
            decision = self.guard.policy.decide(probe)
        return decision.action in (Action.ALLOW, Action.LOG)

    # ------------------------------------------------------------ after

    async def after_call(
        self, ctx: RequestContext, request: ChatCompletionRequest, response: ChatCompletion
    ) -> GuardedResponse:
        await self._label_settled(ctx)
        call: LLMCall = ctx.state["call"]
        ext: Extension = ctx.state["extension"]
        agent = ctx.caller.agent_id
        message = response["choices"][0]["message"]
        text = _text_of(message.get("content"))
        calls = [_tool_call_spec(tc) for tc in message.get("tool_calls") or []]
        review = await self.guard.review(
            call,
            text,
            calls,
            agent=agent,
            recipient=ext.recipient,
            propagator=self._propagator_for(request),
            eager=ctx.state.get(EAGER_KEY, False),  # a marked input: the mark follows the claim
            prepared=ctx.state.get(_PREPARED),
        )
        if self.replay and self._router is not None:  # control vs data (proxy.replay)
            ctx.state["replays"] = await replay_denied(
                self.guard, self._router, request, call, review, agent
            )
        ctx.state["review"] = review
        self._check_caller(review, agent, ext.recipient)
        await self._settle_asks(ctx, review)
        response = self._enforce(response, review)
        out = _text_of(response["choices"][0]["message"].get("content"))
        stored = self.answers.add(out, review.label, agent, self._own_words(call))
        self._landed(ctx)  # pending now: a relay finds the answer with its own label
        if self.read_your_writes:  # and at every other replica, once the client has it
            await self.answers.written(stored)
            self._check_store()
        return GuardedResponse(
            response=response,
            label=review.label.to_dict(),
            decisions=[
                *screened_summaries(ctx),
                *(_decision_summary(d, target) for target, d in targets(review)),
            ],
            headers={GUARD_CALLS_HEADER: str(guard_model_calls(ctx))},
        )

    def admit(self, ctx: RequestContext, outcome: Outcome | None) -> None:
        """Before an answer (or a stream's first byte) leaves: its records go to the
        write-ahead journal; raises when they cannot, or an earlier answer could not be
        fingerprinted (fail closed)."""
        self._check_store()
        self.recorder.write_ahead(ctx, outcome)

    async def finish(self, ctx: RequestContext, outcome: Outcome) -> None:
        if _UNLABELED in ctx.state:  # the call failed before they were: labeled for the record
            try:
                await self._label_settled(ctx)
            except Exception:
                log.exception("inputs of failed request %s could not be labeled", ctx.request_id)
        await self.recorder.record(ctx, outcome)

    # ------------------------------------------------------------ fingerprinting answers

    def stream_opened(self, ctx: RequestContext, held: HeldStream) -> None:
        """A stream whose text goes out before its verdict is in flight until it ends: a
        request relaying part of it meanwhile gets the most its label can be (guard.inflight)."""
        prepared: Prepared | None = ctx.state.get(_PREPARED)
        if ctx.hold_text or prepared is None:
            return
        flight = self.guard.in_flight(
            held.sent_texts, prepared.join, ref=ctx.request_id, reader=ctx.state["recipient"]
        )
        if flight is not None:
            self.in_flight.add(flight)
            ctx.state[_FLIGHT] = (flight, held)

    def stream_closed(self, ctx: RequestContext) -> None:
        """A stream that ended without a verdict (its client left, the upstream or the guard
        failed) leaves what it streamed fingerprinted with the most its label could be."""
        landing: tuple[TextInFlight, HeldStream] | None = ctx.state.get(_FLIGHT)
        if landing is None:
            return
        flight, held = landing
        try:
            for text in held.sent_texts():
                self.answers.add(text, flight.bound, ctx.caller.agent_id)
        except Exception as exc:  # fail closed: later requests are refused
            self.answers.fail(exc)
        finally:
            self._landed(ctx)

    def _landed(self, ctx: RequestContext) -> None:
        landing: tuple[TextInFlight, HeldStream] | None = ctx.state.pop(_FLIGHT, None)
        if landing is not None:
            self.in_flight.discard(landing[0])

    async def _answers_fingerprinted(self, texts: Callable[[], list[str]]) -> None:
        """Once the answers being fingerprinted that labeling ``texts()`` could find are
        stored (proxy.remembering); fails closed when one could not be, or cannot be yet."""
        self._check_store()  # an outage: refuse now rather than wait for it to end
        if self.read_your_writes:  # what other replicas stored before this request
            store = self.guard.fingerprints
            if store is not None:
                await asyncio.to_thread(store.refresh)
        await self.answers.settled(texts)
        self._check_store()

    async def aclose(self) -> None:
        await self.answers.aclose()

    def _check_store(self) -> None:
        if self.answers.outage is not None:
            raise state_unavailable(self.answers.outage)
        if self.answers.failure is not None:
            raise guard_error(
                f"the guard could not fingerprint an earlier answer: {self.answers.failure}"
            )

    def _propagator_for(self, request: ChatCompletionRequest) -> Propagator | None:
        if self._propagator_name == "join":
            return None
        return _Deferred(self._propagator_name, lambda: self._build_propagator(request))

    def _build_propagator(self, request: ChatCompletionRequest) -> Propagator:
        chat_model = None
        if self._router is not None:
            extra = request.model_dump(exclude_unset=True, include=_REQUERY_FIELDS)
            chat_model = RouterModel(self._router, self._propagator_model or request.model, extra)
        return get_propagator(self._propagator_name, model=chat_model, **self._propagator_options)

    def _check_caller(self, review: Review, agent: str, recipient: str | None) -> None:
        """A ``recipient`` names another reader; the caller gets the answer too, so it must be
        cleared for it as well: an agent cannot read above its clearance by naming another."""
        if review.response is None or recipient in (None, agent):
            return
        ok, why = self.guard.policy.readable_by(review.label, agent)
        if not ok and review.response.action is not Action.DENY:
            review.response.action = Action.DENY
            review.response.reason = f"the caller {agent} may not read this answer: {why}"
            review.response.rule = "proxy:caller-clearance"

    async def _settle_asks(self, ctx: RequestContext, review: Review) -> None:
        """Hold every ``ask`` until a person approves (-> allow) or rejects / time runs out."""
        arguments = {t.call.id: t.arguments for t in review.tool_calls}
        for target, decision in targets(review):
            if decision.action is Action.ASK:
                held = arguments.get(target)  # shown to approvers only
                verdict = await self.approvals.wait(ctx, target, decision, held)
                decision.action = Action.ALLOW if verdict.approved else Action.DENY
                decision.reason = f"{decision.reason} [{verdict.summary}]"

    def _enforce(self, response: ChatCompletion, review: Review) -> ChatCompletion:
        response = _own_message(response)  # never mutate the upstream's answer
        message = response["choices"][0]["message"]
        notes: list[str] = []
        kept: list[dict[str, Any]] = []
        by_id = {t.call.id: t for t in review.tool_calls}
        for raw in message.get("tool_calls") or []:
            tool = by_id[raw["id"]]
            decision = tool.decision
            if decision.action is Action.DENY:
                if self.deny_mode == "error":
                    raise PolicyDenied(decision.reason, [_decision_summary(decision, raw["id"])])
                notes.append(
                    f"{NOTE_PREFIX} tool call {tool.call.name} was blocked: {decision.reason}"
                )
                continue
            if decision.redactions:
                args = decision.redact_arguments(tool.arguments)
                raw["function"]["arguments"] = json.dumps(args)
            kept.append(raw)
        if message.get("tool_calls") is not None:
            message["tool_calls"] = kept or None
            if not kept:
                message.pop("tool_calls")
                response["choices"][0]["finish_reason"] = "stop"
        content = self._enforce_content(message.get("content"), review.response)
        message["content"] = "\n".join(p for p in [content, *notes] if p) or None
        return response

    def _enforce_content(self, content: Any, decision: Decision | None) -> str | None:
        text = _text_of(content)
        if decision is None or decision.action in (Action.ALLOW, Action.LOG):
            return text or None
        if decision.action is Action.DENY:
            if self.deny_mode == "error":
                raise PolicyDenied(decision.reason, [_decision_summary(decision, "response")])
            return f"{NOTE_PREFIX} the answer was withheld: {decision.reason}"
        patterns = [p for t in decision.redactions for p in t.patterns]
        return str(redact_value(text, patterns))

    # ------------------------------------------------------------ ingestion

    async def ingest(
        self, documents: list[DocumentIn], ctx: RequestContext
    ) -> list[dict[str, Any]]:
        """Label documents (source rules, annotation checks) and fingerprint them, no model."""
        await self._answers_fingerprinted(lambda: [doc.text for doc in documents])
        caller = ctx.caller
        out: list[dict[str, Any]] = []
        items: list[LabeledItem] = []
        ctx.state["items"] = items
        for doc in documents:
            item = self.guard.label_input(
                doc.spec(vouched=caller.may_raise),
                agent=caller.agent_id,
                key=doc.key,
                in_flight=self.in_flight,
            )
            items.append(item)
            stored = await asyncio.to_thread(
                self.guard.remember,
                doc.text,
                item.label,
                kind=ItemKind.DOCUMENT,
                source=doc.source or doc.url or caller.agent_id,
            )
            out.append(
                {
                    "id": stored,
                    "item_id": item.id,
                    "label": item.label.to_dict(),
                    "provenance": [p.to_dict() for p in item.provenance],
                    "stored": stored is not None,
                }
            )
        return out


class DocumentIn(BaseModel):
    """One document for ``POST /v1/labelgate/documents``."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    source: str | None = None  # retrieval source, e.g. "hr/records/42" (source rules match it)
    url: str | None = None
    kind: Literal["document", "tool_result", "message"] = "document"
    tool: str | None = None
    label: LabelSpec | None = None  # an annotation: may raise; lowering needs the right
    key: str | None = None

    def spec(self, *, vouched: bool = False) -> InputSpec:
        role = "tool" if self.kind == "tool_result" else "user"
        return InputSpec(
            text=self.text,
            kind=SourceKind(self.kind),
            tool=self.tool,
            source=self.source,
            url=self.url,
            asserted=self.label,
            role=role,
            vouched=vouched,
        )


_REQUERY_FIELDS = {"tools", "tool_choice", "parallel_tool_calls", "response_format"}
_UNLABELED = "_unlabeled_request"  # ctx.state: a request whose inputs are still to be labeled
_PREPARED = "_prepared_review"  # ctx.state: Guard.prepare's result for the call
_SPECS = "_input_specs"  # ctx.state: (request, its input items)
_OUTSIDE_TEXT = frozenset({SourceKind.TOOL_RESULT, SourceKind.DOCUMENT})
_OWN_ORIGINS = frozenset({LabelOrigin.DEFAULT, LabelOrigin.SOURCE_RULE})
_FLIGHT = "_in_flight"  # ctx.state: a streamed answer's TextInFlight, and its HeldStream


# ---------------------------------------------------------------- inputs


_NO_NOTE = MessageAnnotation()  # only read: a message the client said nothing about


def input_specs(
    messages: list[ChatMessage], ext: Extension, vouched: bool = False
) -> list[InputSpec]:
    """One InputSpec per text part of each message, in order. ``vouched``: the caller's key
    vouches for the tool names, sources and URLs (else they may only make labels stricter)."""
    tool_names: dict[str, str] = {}
    specs: list[InputSpec] = []
    for index, msg in enumerate(messages):
        for tc in msg.tool_calls or []:
            tool_names[tc.id] = tc.function.name
        note = ext.messages.get(index, _NO_NOTE)
        role = "system" if msg.role == "developer" else msg.role
        kind, tool = note.kind, note.tool
        if msg.role == "tool":
            kind = kind or SourceKind.TOOL_RESULT
            tool = tool or tool_names.get(msg.tool_call_id or "") or msg.name
        for _, text in message_positions(index, msg):
            specs.append(
                InputSpec(
                    text=text,
                    role=role,
                    kind=kind or SourceKind.MESSAGE,
                    tool=tool,
                    source=note.source,
                    url=note.url,
                    asserted=note.label,
                    vouched=vouched,
                )
            )
    return specs


def _own_message(response: ChatCompletion) -> ChatCompletion:
    """A copy of the answer down to what enforcement rewrites (the first choice's message and
    its tool calls); the rest is shared with the upstream's answer, which is left untouched."""
    choices = list(response["choices"])
    first = dict(choices[0])
    message = dict(first["message"])
    if message.get("tool_calls") is not None:
        message["tool_calls"] = [
            {**raw, "function": dict(raw.get("function") or {})} for raw in message["tool_calls"]
        ]
    first["message"] = message
    choices[0] = first
    return {**response, "choices": choices}


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def rendered_output(text: str, calls: list[ToolCallSpec]) -> str:
    """The answer as the guard compares it (same form as ``guard.engine``)."""
    rendered = [
        f"{tc.name}({json.dumps(parse_arguments(tc.arguments), sort_keys=True)})" for tc in calls
    ]
    return "\n".join([text, *rendered]).strip()


def _params(request: ChatCompletionRequest) -> dict[str, Any]:
    # Undeclared fields of the OpenAI body, kept as extras: read there (copies, as a dump
    # would give) rather than dumping the whole request, messages and all.
    extra = request.model_extra or {}
    return {k: copy.deepcopy(extra[k]) for k in ("max_tokens", "stop", "temperature") if k in extra}


def _tool_call_spec(raw: dict[str, Any]) -> ToolCallSpec:
    function = raw.get("function") or {}
    return ToolCallSpec(
        id=raw.get("id", ""),
        name=function.get("name", ""),
        arguments=function.get("arguments") or "{}",
    )


# ---------------------------------------------------------------- verdicts


def _decision_summary(decision: Decision, target: str) -> dict[str, Any]:
    return {
        "id": decision.id,
        "target": target,
        "action": decision.action.value,
        "rule": decision.rule,
        "reason": decision.reason,
    }


__all__ = [
    "DocumentIn",
    "Extension",
    "PolicyHook",
    "RouterModel",
    "input_specs",
]
