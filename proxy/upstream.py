"""Upstreams: where a deployment's calls go.

- ``PassthroughUpstream``: an OpenAI-compatible HTTP API, through the client
  ``upstream_clients`` chose for its endpoint (the pool, or httpx through a proxy); bodies are
  forwarded as they are, so nothing is lost in translation.
- ``LiteLLMUpstream``: any provider litellm knows, translated to the OpenAI shapes.
- ``ChatModelUpstream``: an in-process ``guard.models.ChatModel`` (the embedded SmolLM2).

Each raises ``UpstreamError`` for anything that went wrong, saying whether a retry may help.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol

import orjson

from labelgate.guard.models import ChatModel, ChatResult, ModelError, import_litellm
from labelgate.proxy.errors import ProxyError
from labelgate.proxy.httppool import TransportError
from labelgate.proxy.tls import TlsSettings
from labelgate.proxy.upstream_clients import UpstreamClients

Chunk = dict[str, Any]
# Chunks that arrived together (a network read, or its first part): sent on in one write.
Batch = list[Chunk]


class WireBatch(list[Chunk]):
    """A batch read off the wire, with each chunk's JSON as the upstream sent it (``lines``),
    so that a chunk passed on unchanged is not encoded a second time."""

    __slots__ = ("lines",)

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[bytes] = []

    def add(self, chunk: Chunk, line: bytes) -> None:
        self.append(chunk)
        self.lines.append(line)


Kind = Literal["timeout", "connection", "status", "garbage", "model"]
# Client mistakes: another try or another deployment would fail the same way.
_CLIENT_STATUSES = frozenset({400, 404, 413, 422})


class UpstreamError(Exception):
    def __init__(
        self, kind: Kind, message: str, *, status: int | None = None, body: Any = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.body = body

    @property
    def client_fault(self) -> bool:
        return self.kind == "status" and self.status in _CLIENT_STATUSES

    @property
    def retryable(self) -> bool:
        if self.kind == "status":
            return self.status == 429 or (self.status or 0) >= 500
        return self.kind != "model"

    def to_proxy_error(self) -> ProxyError:
        if self.kind == "timeout":
            return ProxyError(504, self.message, type="upstream_timeout", code="upstream_timeout")
        if self.client_fault and self.status is not None:
            err = self.body.get("error") if isinstance(self.body, dict) else None
            err = err if isinstance(err, dict) else {}
            return ProxyError(
                self.status,
                str(err.get("message") or self.message),
                type=str(err.get("type") or "invalid_request_error"),
                param=err.get("param"),
                code=err.get("code"),
            )
        return ProxyError(502, self.message, type="upstream_error", code="upstream_error")


class Upstream(Protocol):
    async def complete(self, body: dict[str, Any], timeout: float) -> dict[str, Any]: ...

    def stream(self, body: dict[str, Any], timeout: float) -> AsyncIterator[Batch]: ...

    async def embed(self, body: dict[str, Any], timeout: float) -> dict[str, Any]: ...


def _is_completion(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("choices"), list)


# --------------------------------------------------------------------------- passthrough


# One line of an upstream's event stream, and the data of one event (its data lines joined),
# may be this long at most: past it the stream is an upstream error, not unbounded memory.
MAX_LINE_BYTES = 1 << 20
MAX_EVENT_BYTES = 4 << 20


class PassthroughUpstream:
    """``timeout`` goes unused here: the router bounds every call (``asyncio.timeout``) and
    every wait for a stream's next batch (``_paced``), so the clients set no timer of their
    own."""

    def __init__(
        self,
        clients: UpstreamClients,
        api_base: str,
        api_key: str | None,
        tls: TlsSettings | None = None,
        *,
        max_line: int = MAX_LINE_BYTES,
        max_event: int = MAX_EVENT_BYTES,
    ) -> None:
        headers = {"content-type": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self.channel = clients.channel(api_base, headers, tls)
        self._max_line = max_line
        self._max_event = max_event

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            status, raw = await self.channel.post(path, orjson.dumps(body))
        except TransportError as exc:
            raise UpstreamError("connection", f"upstream connection failed: {exc}") from None
        data = _json_or_none(raw)
        if status >= 400:
            raise UpstreamError(
                "status", f"upstream answered HTTP {status}", status=status, body=data
            )
        return data

    async def complete(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        data = await self._post("/chat/completions", body)
        if not _is_completion(data):
            raise UpstreamError("garbage", "upstream answered something that is not a completion")
        return data

    async def embed(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        data = await self._post("/embeddings", body)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise UpstreamError("garbage", "upstream answered something that is not embeddings")
        return data

    async def stream(self, body: dict[str, Any], timeout: float) -> AsyncIterator[Batch]:
        try:
            resp = await self.channel.open("/chat/completions", orjson.dumps(body))
        except TransportError as exc:
            raise UpstreamError("connection", f"upstream connection failed: {exc}") from None
        finished = False  # [DONE] came: the connection may be kept (the body's end read)
        try:
            if resp.status >= 400:
                try:
                    raw = await resp.read()
                except TransportError:
                    raw = b""
                raise UpstreamError(
                    "status",
                    f"upstream answered HTTP {resp.status}",
                    status=resp.status,
                    body=_json_or_none(raw),
                )
            async for batch in _sse_batches(resp.pieces(), self._max_line, self._max_event):
                yield batch
            finished = True
        finally:
            await resp.aclose(finished)


def _json_or_none(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


_DONE = object()


def _event(data: bytes) -> Any:
    """The JSON chunk of one SSE event's data, or ``_DONE``."""
    if data == b"[DONE]":
        return _DONE
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamError("garbage", "upstream sent a stream chunk that is not JSON") from None
    if not isinstance(chunk, dict):
        raise UpstreamError("garbage", "upstream sent a stream chunk that is not an object")
    if "error" in chunk:
        raise UpstreamError("status", "upstream reported an error mid-stream", status=502)
    return chunk


def _shows_something(chunk: Chunk) -> bool:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and (delta.get("content") or delta.get("refusal")):
            return True
    return False


def _too_long(what: str, limit: int) -> UpstreamError:
    return UpstreamError("garbage", f"upstream sent an event-stream {what} over {limit} bytes")


def _joined(data: list[bytes]) -> bytes:
    """An event's data lines joined with newlines (each line's one leading space is not part
    of its value, as the SSE spec reads them), without surrounding whitespace."""
    if len(data) == 1:
        return data[0].strip()
    return b"\n".join(line[1:] if line[:1] == b" " else line for line in data).strip()


async def _sse_batches(
    pieces: AsyncIterator[bytes],
    max_line: int = MAX_LINE_BYTES,
    max_event: int = MAX_EVENT_BYTES,
) -> AsyncIterator[Batch]:
    """The JSON chunks of an OpenAI SSE stream, two batches per network read at most: its
    chunks up to the first that shows something (text or a refusal), at once, then the rest of
    the read together. One batch per read saves writes, but a read can hold a whole answer,
    and the first token would wait for every chunk after it to be checked. A stream that stops
    before [DONE] is an error.

    Read as the SSE spec says: lines end with LF, CRLF or CR; an event is the lines up to a
    blank one; its ``data:`` lines are joined with LF; comments (``:``) and the ``id``,
    ``retry`` and unknown fields are skipped, and ``event: error`` is an upstream error (other
    event names are read as chunks, as the OpenAI SDK reads them). A line longer than
    ``max_line`` bytes or an event's data longer than ``max_event`` is an upstream error."""
    pending = b""  # the start of a line whose end has not come yet
    data: list[bytes] = []  # the data lines of the event being read
    size = 0  # their length
    kind = b""  # its event name
    try:
        async for piece in pieces:
            read = pending + piece if pending else piece
            lines = read.splitlines()  # at LF, CRLF and CR, in one pass
            end = read[-1:]
            if end == b"\n" or not lines:
                pending = b""
            elif end == b"\r":  # its LF may come in the next read: the line waits for it
                pending = lines.pop() + b"\r"
            else:
                pending = lines.pop()
            if len(read) > max_line and (
                len(pending) > max_line or any(len(line) > max_line for line in lines)
            ):
                raise _too_long("line", max_line)
            batch = WireBatch()
            early = len(lines) > 2  # more than one event (a data line and a blank) to split
            for line in lines:
                if line:
                    if line.startswith(b"data:"):
                        if data:  # a further line of the event
                            size += len(line)
                            if size > max_event:
                                raise _too_long("event", max_event)
                        else:
                            size = len(line)
                        data.append(line[5:])
                    elif line[0] != 58:  # not a comment (":")
                        name, _, value = line.partition(b":")
                        value = value[1:] if value[:1] == b" " else value
                        if name == b"event":
                            kind = value
                        elif name == b"data":  # "data" alone: an empty data line
                            data.append(value)
                    continue
                if not data:  # a blank line ends an event; one without data is none
                    kind = b""
                    continue
                # A chunk goes on in the bytes it came in, on one line: one that came on
                # several is encoded anew.
                field = data[0].strip() if len(data) == 1 else _joined(data)
                wire = field if len(data) == 1 else None
                data.clear()
                try:
                    if kind:
                        named, kind = kind, b""
                        if named == b"error":
                            raise UpstreamError(
                                "status", "upstream sent an error event mid-stream", status=502
                            )
                    event = _event(field)
                except UpstreamError:
                    if batch:  # the good chunks before a bad line still go out, as one by one
                        yield batch
                    raise
                if event is _DONE:
                    if batch:
                        yield batch
                    return
                batch.add(event, wire if wire is not None else orjson.dumps(event))
                if early and _shows_something(event):
                    early = False
                    yield batch
                    batch = WireBatch()
            if batch:
                yield batch
        last = pending.rstrip(b"\r")  # a last line without its newline
        if last.startswith(b"data:"):
            data.append(last[5:])
        if data and _joined(data) == b"[DONE]":
            return
    except TransportError as exc:
        raise UpstreamError("connection", f"upstream stream broke: {exc}") from None
    raise UpstreamError("connection", "upstream stream ended before [DONE]")


# --------------------------------------------------------------------------- litellm


def _litellm_error(exc: Exception) -> UpstreamError:
    litellm = import_litellm()
    if isinstance(exc, litellm.Timeout):
        return UpstreamError("timeout", f"upstream timed out: {exc}")
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status >= 400:
        return UpstreamError("status", f"upstream answered HTTP {status}: {exc}", status=status)
    return UpstreamError("connection", f"upstream call failed: {type(exc).__name__}: {exc}")


def _plain(obj: Any) -> dict[str, Any]:
    """A litellm response object as the OpenAI JSON shape (no internal fields)."""
    data = obj.model_dump(exclude_none=True) if hasattr(obj, "model_dump") else dict(obj)
    for internal in ("_hidden_params", "_response_ms", "provider_specific_fields"):
        data.pop(internal, None)
    for choice in data.get("choices", []):
        choice.pop("provider_specific_fields", None)
        for part in ("message", "delta"):
            if isinstance(choice.get(part), dict):
                choice[part].pop("provider_specific_fields", None)
    return data


class LiteLLMUpstream:
    def __init__(self, model: str, params: dict[str, Any]) -> None:
        self._model = model
        # Retries are ours (router), so litellm and the openai client must not add their own.
        self._params = {**params, "num_retries": 0, "max_retries": 0}

    def _kwargs(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        return {**self._params, **body, "model": self._model, "timeout": timeout}

    async def complete(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        litellm = import_litellm()
        try:
            resp = await litellm.acompletion(**self._kwargs(body, timeout))
        except Exception as exc:  # litellm raises many provider-specific types
            raise _litellm_error(exc) from None
        return _plain(resp)

    async def stream(self, body: dict[str, Any], timeout: float) -> AsyncIterator[Batch]:
        litellm = import_litellm()
        kwargs = {**self._kwargs(body, timeout), "stream": True}
        try:
            resp = await litellm.acompletion(**kwargs)
            async for chunk in resp:
                yield [_plain(chunk)]
        except UpstreamError:
            raise
        except Exception as exc:
            raise _litellm_error(exc) from None

    async def embed(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        litellm = import_litellm()
        kwargs = {**self._params, **body, "model": self._model, "timeout": timeout}
        try:
            resp = await litellm.aembedding(**kwargs)
        except Exception as exc:
            raise _litellm_error(exc) from None
        return _plain(resp)


# --------------------------------------------------------------------------- in-process model

_CHAT_PARAMS = ("temperature", "max_tokens", "max_completion_tokens", "seed", "stop", "top_p")


class ChatModelUpstream:
    """An in-process ChatModel answering in the OpenAI shapes."""

    def __init__(self, model: ChatModel, name: str) -> None:
        self.model = model
        self._name = name

    async def _result(self, body: dict[str, Any]) -> ChatResult:
        params = {k: body[k] for k in _CHAT_PARAMS if body.get(k) is not None}
        if "max_completion_tokens" in params:
            params.setdefault("max_tokens", params.pop("max_completion_tokens"))
        try:
            return await self.model.chat(body["messages"], **params)
        except ModelError as exc:
            raise UpstreamError("model", str(exc)) from None

    def _envelope(self, kind: str) -> dict[str, Any]:
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex[:24],
            "object": kind,
            "created": int(time.time()),
            "model": self._name,
        }

    async def complete(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        result = await self._result(body)
        message: dict[str, Any] = {"role": "assistant", "content": result.text}
        if result.tool_calls:
            message["tool_calls"] = result.tool_calls
        return {
            **self._envelope("chat.completion"),
            "choices": [{"index": 0, "message": message, "finish_reason": result.finish_reason}],
            "usage": _usage(result),
        }

    async def stream(self, body: dict[str, Any], timeout: float) -> AsyncIterator[Batch]:
        # The model answers whole; the answer is sent as the chunks a streaming API would send.
        result = await self._result(body)
        head = self._envelope("chat.completion.chunk")

        def chunk(delta: dict[str, Any], finish: str | None = None) -> Chunk:
            return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        yield [chunk({"role": "assistant", "content": ""})]
        if result.text:
            yield [chunk({"content": result.text})]
        if result.tool_calls:
            calls = [{"index": i, **call} for i, call in enumerate(result.tool_calls)]
            yield [chunk({"tool_calls": calls})]
        yield [chunk({}, result.finish_reason)]
        if (body.get("stream_options") or {}).get("include_usage"):
            yield [{**head, "choices": [], "usage": _usage(result)}]

    async def embed(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        raise UpstreamError(
            "status",
            f"model {self._name} does not serve embeddings",
            status=400,
            body={
                "error": {
                    "message": f"model {self._name} does not serve embeddings",
                    "param": "model",
                    "code": "unsupported_model",
                }
            },
        )


def _usage(result: ChatResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }
