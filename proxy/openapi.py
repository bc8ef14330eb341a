"""The OpenAPI 3.1 description of the gateway's public endpoints (``GET /openapi.json``).

Built from the pydantic models the endpoints validate with (``proxy.schemas``, the guard's
``Extension`` / ``MessageAnnotation`` / ``DocumentIn``, ``ApprovalAnswer``, ``ErrorBody``), so
the description cannot drift from what is enforced; only the glue (paths, the ``model`` enum,
the ``labelgate`` field's type, security) is written here. Property-based fuzzing
(tests/test_fuzz_schema.py, schemathesis) reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter

from labelgate.proxy.errors import ErrorBody
from labelgate.proxy.labelgate_routes import ApprovalAnswer, DocumentsBody
from labelgate.proxy.policy_hook import Extension
from labelgate.proxy.schemas import ChatCompletionRequest, EmbeddingRequest

Schema = dict[str, Any]
_REF = "#/components/schemas/{model}"


class _Components:
    """``components.schemas``, filled from pydantic's JSON Schemas (their ``$defs`` hoisted)."""

    def __init__(self) -> None:
        self.schemas: dict[str, Schema] = {}

    def ref(self, name: str, tp: Any) -> Schema:
        schema = TypeAdapter(tp).json_schema(ref_template=_REF)
        self.schemas.update(schema.pop("$defs", {}))
        self.schemas[name] = schema
        return {"$ref": _REF.format(model=name)}


def _header(name: str, description: str) -> Schema:
    return {"name": name, "in": "header", "required": False, "schema": {"type": "string"},
            "description": description}  # fmt: skip


def _errors() -> Schema:
    content = {"application/json": {"schema": {"$ref": _REF.format(model="ErrorBody")}}}
    return {"default": {"description": "an OpenAI-style error", "content": content}}


def _operation(summary: str, body: Schema | None, params: list[Schema], secure: bool) -> Schema:
    ok = {"description": "success", "content": {"application/json": {"schema": {}}}}
    op: Schema = {"summary": summary, "responses": {"200": ok, **_errors()}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    op["security"] = [{"bearer": []}] if secure else []
    return op


def openapi_schema(model_names: Sequence[str], *, guard: bool, keys: bool) -> Schema:
    """The description; ``model_names`` become the ``model`` enum, ``guard`` adds the guard's
    endpoints, ``keys`` says whether every endpoint needs a bearer key (else only the
    approvals endpoints, for the approver token)."""
    parts = _Components()
    chat = parts.ref("ChatCompletionRequest", ChatCompletionRequest)
    embed = parts.ref("EmbeddingRequest", EmbeddingRequest)
    parts.ref("ErrorBody", ErrorBody)
    names = list(model_names)
    for request in ("ChatCompletionRequest", "EmbeddingRequest"):
        parts.schemas[request]["properties"]["model"] = {"type": "string", "enum": names}
    extension = parts.ref("Extension", Extension)
    parts.schemas["ChatCompletionRequest"]["properties"]["labelgate"] = {
        "anyOf": [extension, {"type": "null"}]
    }
    parts.schemas["Extension"]["properties"]["messages"]["propertyNames"] = {"pattern": "^[0-9]+$"}
    session = [
        _header("X-Labelgate-Session", "the session id"),
        _header("traceparent", "W3C trace context"),
    ]
    if not keys:
        session.append(_header("X-Labelgate-Agent", "the agent's name (no keys configured)"))
    paths: dict[str, Schema] = {
        "/v1/chat/completions": {"post": _operation("chat completion", chat, session, keys)},
        "/v1/embeddings": {"post": _operation("embeddings", embed, session, keys)},
        "/v1/models": {"get": _operation("the configured models", None, [], keys)},
        "/healthz": {"get": _operation("liveness", None, [], False)},
        "/readyz": {"get": _operation("readiness", None, [], False)},
    }
    if guard:
        paths |= _guard_paths(parts, session, keys)
    return {
        "openapi": "3.1.0",
        "info": {"title": "labelgate", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": parts.schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _guard_paths(parts: _Components, session: list[Schema], keys: bool) -> dict[str, Schema]:
    documents = parts.ref("DocumentsBody", DocumentsBody)
    answer = parts.ref("ApprovalAnswer", ApprovalAnswer)
    approval_id = {"name": "approval_id", "in": "path", "required": True,
                   "schema": {"type": "string"}}  # fmt: skip
    return {
        "/v1/labelgate/documents": {
            "post": _operation("ingest labeled documents", documents, session, keys)
        },
        "/v1/labelgate/approvals": {
            "get": _operation("pending approvals (approvers only)", None, [], True)
        },
        "/v1/labelgate/approvals/{approval_id}": {
            "post": _operation("answer an approval (approvers only)", answer, [approval_id], True)
        },
    }
