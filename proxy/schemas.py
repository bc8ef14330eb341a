"""Request models at the edge: OpenAI's schema, permissive about fields we do not know.

Unknown fields are kept and forwarded (providers add their own); the ``labelgate`` extension
field is for the guard and never leaves for the upstream.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labelgate.proxy.errors import ProxyError, bad_request

M = TypeVar("M", bound=BaseModel)
Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class FunctionCall(_Open):
    name: str
    arguments: str


class ToolCall(_Open):
    id: str
    type: str = "function"
    function: FunctionCall


class ChatMessage(_Open):
    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDef(_Open):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Open):
    type: str = "function"
    function: FunctionDef


class ChatCompletionRequest(_Open):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None
    n: int | None = Field(None, ge=1)
    labelgate: dict[str, Any] | None = None  # extension for the guard, kept from the upstream

    def upstream_body(self, model: str) -> dict[str, Any]:
        """What the upstream receives: what the client set, minus our extension."""
        body = self.model_dump(exclude_unset=True, exclude={"labelgate"})
        body["model"] = model
        return body


class EmbeddingRequest(_Open):
    model: str
    input: str | list[str] | list[int] | list[list[int]]

    def upstream_body(self, model: str) -> dict[str, Any]:
        body = self.model_dump(exclude_unset=True)
        body["model"] = model
        return body


def validation_error(exc: ValidationError) -> ProxyError:
    """A 400 naming the first bad field the way OpenAI does (``messages.0.role``)."""
    err = exc.errors()[0]
    param = ".".join(str(part) for part in err["loc"]) or None
    message = f"{param}: {err['msg']}" if param else err["msg"]
    code = "missing_required_parameter" if err["type"] == "missing" else "invalid_value"
    return bad_request(message, param=param, code=code)


def parse_request(model: type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
