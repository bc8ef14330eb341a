"""The label guard's own endpoints: document ingestion and human approvals.

- ``POST /v1/labelgate/documents``: ``[{text, source, url, kind, tool, label, key}]`` (or
  ``{"documents": [...]}``) -> labeled by the policy's source rules and the annotation rules,
  fingerprinted, so the text keeps its label when it shows up in a prompt later. No model call.
- ``GET /v1/labelgate/approvals``: the ``ask`` decisions waiting for a person.
- ``POST /v1/labelgate/approvals/{id}``: ``{"approve": true|false, "by": "...", "note": "..."}``.

With API keys configured, answering an approval needs a key whose ``assertions`` say
``approve: true``: an agent must not approve its own flows.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from labelgate.proxy.app import (
    Endpoint,
    ProxyState,
    admitted,
    finish_failed,
    finish_request,
    headers_of,
    json_response,
    read_json,
)
from labelgate.proxy.approvals import UnknownApproval
from labelgate.proxy.context import Caller
from labelgate.proxy.errors import ProxyError
from labelgate.proxy.hook import Outcome
from labelgate.proxy.policy_hook import DocumentIn, PolicyHook
from labelgate.proxy.schemas import validation_error

_DOCUMENTS = TypeAdapter(list[DocumentIn])
MAX_DOCUMENTS = 1000


class ApprovalAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approve: bool
    by: str | None = Field(None, max_length=200)
    note: str = Field("", max_length=2000)


def _state(request: Request) -> ProxyState:
    return request.app.state.proxy


def _parse(adapter: TypeAdapter[Any], data: Any) -> Any:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def _may_approve(state: ProxyState, caller: Caller) -> None:
    if state.keys.open:
        return  # no keys: loopback only, whoever is here runs the proxy
    if not caller.assertions.get("approve"):
        raise ProxyError(
            403,
            f"agent {caller.agent_id} may not answer approvals (its key needs "
            "assertions: {approve: true})",
            type="permission_error",
            code="not_an_approver",
        )


def guard_routes(hook: PolicyHook) -> list[tuple[str, Endpoint, list[str]]]:
    async def documents(request: Request) -> Response:
        state = _state(request)
        ctx, key = await admitted(state, request, "documents")
        ctx.model = "labelgate/documents"
        try:
            body = await read_json(request, state.max_body)
            if isinstance(body, dict) and "documents" in body:
                body = body["documents"]
            docs: list[DocumentIn] = _parse(_DOCUMENTS, body)
            if len(docs) > MAX_DOCUMENTS:
                raise ProxyError(400, f"at most {MAX_DOCUMENTS} documents per request")
            data = await hook.ingest(docs, ctx)
            await finish_request(hook, ctx, Outcome("ok"))
            return json_response({"object": "list", "data": data})
        except BaseException as exc:  # recorded like a failed model call
            await finish_failed(hook, ctx, exc, None)
            raise
        finally:
            key.release()

    async def list_approvals(request: Request) -> Response:
        state = _state(request)
        state.keys.authenticate(headers_of(request))
        pending = [p.to_dict() for p in hook.approvals.pending()]
        return json_response({"object": "list", "data": pending})

    async def answer_approval(request: Request) -> Response:
        state = _state(request)
        caller, _ = state.keys.authenticate(headers_of(request))
        _may_approve(state, caller)
        answer: ApprovalAnswer = _parse(
            TypeAdapter(ApprovalAnswer), await read_json(request, state.max_body)
        )
        approval_id = request.path_params["approval_id"]
        by = answer.by or caller.agent_id
        if caller.authenticated and by != caller.agent_id:
            by = f"{by} (key of {caller.agent_id})"
        try:
            item = hook.approvals.answer(approval_id, answer.approve, by, answer.note)
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
