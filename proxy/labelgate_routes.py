"""The label guard's own endpoints: document ingestion and human approvals.

- ``POST /v1/labelgate/documents``: ``[{text, source, url, kind, tool, label, key}]`` (or
  ``{"documents": [...]}``) -> labeled by the policy's source rules and the annotation rules,
  fingerprinted, so the text keeps its label when it shows up in a prompt later. No model call.
- ``GET /v1/labelgate/approvals``: the ``ask`` decisions waiting for a person.
- ``POST /v1/labelgate/approvals/{id}``: ``{"approve": true|false, "by": "...", "note": "..."}``.

Listing and answering approvals need an approver: with API keys, a key whose ``assertions``
say ``approve: true``; without keys, the approver token ``build_app`` wrote to the state dir
(``ApproverToken``), as a bearer token. Nobody answers an approval of their own agent's request.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from labelgate.guard.state import StateUnavailable
from labelgate.proxy.app import (
    Endpoint,
    ProxyState,
    admitted,
    finish_failed,
    finish_request,
    guard_headers,
    headers_of,
    json_response,
    read_json,
)
from labelgate.proxy.approvals import ApproverToken, UnknownApproval
from labelgate.proxy.auth import bearer_token
from labelgate.proxy.context import AGENT_HEADER, Caller
from labelgate.proxy.errors import ProxyError, state_unavailable
from labelgate.proxy.header_values import text_of_header
from labelgate.proxy.hook import Outcome
from labelgate.proxy.policy_hook import DocumentIn, PolicyHook
from labelgate.proxy.schemas import validation_error

MAX_DOCUMENTS = 1000
DocumentList = Annotated[list[DocumentIn], Field(max_length=MAX_DOCUMENTS)]


class DocumentBatch(BaseModel):
    """``{"documents": [...]}``, the other form of the documents endpoint's body."""

    model_config = ConfigDict(extra="forbid")

    documents: DocumentList


DocumentsBody = DocumentList | DocumentBatch  # the body of POST /v1/labelgate/documents
_DOCUMENTS: TypeAdapter[list[DocumentIn] | DocumentBatch] = TypeAdapter(DocumentsBody)


class ApprovalAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approve: bool
    by: str | None = Field(None, max_length=200)
    note: str = Field("", max_length=2000)


def _state(request: Request) -> ProxyState:
    return request.app.state.proxy


def _parse(adapter: TypeAdapter[Any], data: Any, prefix: str = "") -> Any:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise validation_error(exc, data, prefix) from None


def _documents(hook: PolicyHook, body: Any) -> list[DocumentIn]:
    """The documents of a body (a list, or ``{"documents": [...]}``), their labels checked
    against the policy's lattice (400 naming ``documents.N.label``)."""
    parsed = _parse(_DOCUMENTS, body, "documents." if isinstance(body, list) else "")
    docs: list[DocumentIn] = parsed.documents if isinstance(parsed, DocumentBatch) else parsed
    for index, doc in enumerate(docs):
        hook.check_label(doc.label, f"documents.{index}.label")
    return docs


APPROVER = "approver"  # keyless: who answered, unless X-Labelgate-Agent says


def _approver(state: ProxyState, token: ApproverToken | None, request: Request) -> Caller:
    """The caller, if an approver: with keys, a key asserting ``approve: true`` (else 403);
    keyless, the bearer of the approver token (else 401)."""
    headers = headers_of(request)
    if state.keys.open:
        if token is None or not token.matches(bearer_token(headers)):
            where = token.path if token is not None else "the guard's state dir"
            raise ProxyError(
                401,
                f"approvals need the approver token (in {where}) as `Authorization: Bearer`",
                type="authentication_error",
                code="invalid_approver_token",
            )
        agent = text_of_header(headers.get(AGENT_HEADER, "")).strip() or APPROVER
        return Caller(agent_id=agent)
    caller, _ = state.keys.authenticate(headers)
    if not caller.assertions.get("approve"):
        raise ProxyError(
            403,
            f"agent {caller.agent_id} may not list or answer approvals (its key needs "
            "assertions: {approve: true})",
            type="permission_error",
            code="not_an_approver",
        )
    return caller


def _not_own(caller: Caller, agent: str) -> None:
    if caller.agent_id == agent:
        raise ProxyError(
            403,
            f"agent {agent} may not answer an approval of its own request",
            type="permission_error",
            code="own_request",
        )


def guard_routes(
    hook: PolicyHook, token: ApproverToken | None = None
) -> list[tuple[str, Endpoint, list[str]]]:
    """The guard's endpoints; ``token``: keyless mode's approver credential."""

    async def documents(request: Request) -> Response:
        state = _state(request)
        ctx, key = await admitted(state, request, "documents")
        ctx.model = "labelgate/documents"
        try:
            docs = _documents(hook, await read_json(request, state.max_body))
            try:
                data = await hook.ingest(docs, ctx)
            except StateUnavailable as exc:  # not stored, so not kept: refuse, saying why
                raise state_unavailable(exc) from None
            await finish_request(hook, ctx, Outcome("ok"))
            return json_response({"object": "list", "data": data}, guard_headers(ctx))
        except BaseException as exc:  # recorded like a failed model call
            await finish_failed(hook, ctx, exc, None)
            raise
        finally:
            key.release()

    async def list_approvals(request: Request) -> Response:
        _approver(_state(request), token, request)
        pending = [p.to_dict() for p in await hook.approvals.pending()]
        return json_response({"object": "list", "data": pending})

    async def answer_approval(request: Request) -> Response:
        state = _state(request)
        caller = _approver(state, token, request)
        answer: ApprovalAnswer = _parse(
            TypeAdapter(ApprovalAnswer), await read_json(request, state.max_body)
        )
        approval_id = request.path_params["approval_id"]
        by = answer.by or caller.agent_id
        if caller.authenticated and by != caller.agent_id:
            by = f"{by} (key of {caller.agent_id})"
        try:
            _not_own(caller, (await hook.approvals.find(approval_id)).agent)
            item = await hook.approvals.answer(approval_id, answer.approve, by, answer.note)
        except UnknownApproval:
            raise ProxyError(
                404, f"no pending approval {approval_id}", code="approval_not_found"
            ) from None
        return json_response({**item.to_dict(), "approved": answer.approve, "by": by})

    return [
        ("/labelgate/documents", documents, ["POST"]),
        ("/labelgate/approvals", list_approvals, ["GET"]),
        ("/labelgate/approvals/{approval_id}", answer_approval, ["POST"]),
    ]
