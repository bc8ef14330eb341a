"""Request models at the edge: OpenAI's schema, permissive about fields we do not know.

Unknown fields are kept and forwarded (providers add their own); the ``labelgate`` extension
field is for the guard and never leaves for the upstream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, with_config
from pydantic_core import ErrorDetails
from typing_extensions import TypedDict

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


@with_config(ConfigDict(extra="allow"))
class TextPart(TypedDict):
    """A ``{"type": "text", "text": ...}`` content part (other keys kept)."""

    type: Literal["text"]
    text: str


@with_config(ConfigDict(extra="allow"))
class OtherPart(TypedDict):
    """Any other content part (image_url, input_audio, file, ...): an object with a ``type``."""

    type: str


def _part_kind(part: Any) -> str:
    return "text" if isinstance(part, dict) and part.get("type") == "text" else "other"


# Parts stay dicts (what the guard and the upstream read), validated on the way in: a text
# part's text is a string, every part an object with a string type.
ContentPart = Annotated[
    Annotated[TextPart, Tag("text")] | Annotated[OtherPart, Tag("other")],
    Discriminator(_part_kind),
]


class ChatMessage(_Open):
    role: Role
    content: str | list[ContentPart] | None = None
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


def validation_error(exc: ValidationError, data: Any = None, prefix: str = "") -> ProxyError:
    """A 400 naming the first bad field the way OpenAI does (``messages.0.role``).

    With the input ``data``, the path is the field's place in it: pydantic's location also
    names the union member that was tried (``content.str``), which is not a place, and of
    the members' errors the one that got deepest into the input is the one reported."""
    errors = exc.errors()
    first = errors[0]
    if data is not None:
        places = [(_place(data, e), e) for e in errors]
        top = places[0][0][:1]  # the first bad field, as the first error names it
        candidates = [found for found in places if found[0][:1] == top]
        place, err = max(candidates, key=lambda found: len(found[0]))
    else:
        place, err = list(first["loc"]), first
    param = prefix + ".".join(str(part) for part in place) or None
    message = f"{param}: {err['msg']}" if param else err["msg"]
    code = "missing_required_parameter" if err["type"] == "missing" else "invalid_value"
    return bad_request(message, param=param, code=code)


def _place(data: Any, err: ErrorDetails) -> list[str | int]:
    """The steps of ``err``'s location that exist in ``data`` (a missing field: its name)."""
    steps: list[str | int] = []
    here = data
    loc: Sequence[str | int] = err["loc"]
    for i, step in enumerate(loc):
        inner = _inside(here, step)
        if inner is not _NOWHERE:
            here = inner
        elif not (err["type"] == "missing" and i == len(loc) - 1):
            continue  # a union member's tag, not a place (a missing field is kept)
        steps.append(step)
    return steps


_NOWHERE = object()


def _inside(here: Any, step: str | int) -> Any:
    """``here[step]`` (a dict's key as sent or as a number), or ``_NOWHERE``."""
    if isinstance(here, dict):
        for key in (step, str(step)):
            if key in here:
                return here[key]
    elif isinstance(here, list) and isinstance(step, int) and 0 <= step < len(here):
        return here[step]
    return _NOWHERE


def parse_request(model: type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, data) from None
