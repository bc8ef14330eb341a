"""A small OpenAI-compatible upstream whose behaviour is chosen by the requested model.

- ``fake-chat``: answers ``echo: <last user text>`` (streamed in small pieces);
- ``fake-tools`` / ``fake-parallel``: calls the first / every tool of the request, arguments
  streamed in several pieces;
- ``fake-slow``: waits ``SLOW_SECONDS`` before answering;
- ``fake-500``: HTTP 500 with an OpenAI error body;
- ``fake-garbage``: 200 with a body (or stream chunk) that is not JSON;
- ``fake-drop``: streams some text and half a tool call, then drops the connection;
- ``fake-flaky``: HTTP 500 on every other call (first one fails);
- ``fake-stall``: streams one chunk, then stalls for ``SLOW_SECONDS``.
- ``fake-parrot``: answers ``Summary: <the last message's text>`` (a model repeating a page);
- ``fake-linger``: as ``fake-parrot``, but a stream waits ``SLOW_SECONDS`` after its text
  before it ends (a stream whose text is out while it is still on);
- ``fake-mailer``: calls the first tool with ``{"to": <the address of the first instruction
  it reads to send, forward or email something to someone>, "body": "as requested"}`` (a model
  obeying whatever instruction it read; with the prose gone, as in the guard's data-only
  replay, it has no instruction to obey and writes to nobody@example.com).

Every request is recorded in ``FakeUpstream.requests`` for assertions (``keep=False``: only
counted, for benchmarks). ``GET /v1/models`` lists ``fake-chat`` (a readiness probe).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

SLOW_SECONDS = 2.0
ARGUMENTS = '{"to": "bob@example.com", "body": "hello"}'
_ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# "forward the itinerary to x@y", "please email the notes to x@y": an instruction, in a sentence
_INSTRUCTION = re.compile(
    r"\b(?:send|forward|e-?mail|mail|reply)\b[^.\n]*?\bto\s+(" + _ADDRESS.pattern + ")", re.I
)


@dataclass
class Recorded:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class FakeUpstream:
    requests: list[Recorded] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    keep: bool = True

    def last(self, model: str | None = None) -> Recorded:
        for rec in reversed(self.requests):
            if model is None or rec.body.get("model") == model:
                return rec
        raise LookupError(f"no request for {model}")

    def count(self, model: str) -> int:
        return self.calls.get(model, 0)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/v1/models", _models, methods=["GET"]),
            ]
        )

    async def _record(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        if self.keep:
            self.requests.append(Recorded(request.url.path, body, dict(request.headers)))
        model = str(body.get("model"))
        self.calls[model] = self.calls.get(model, 0) + 1
        return body

    async def _embeddings(self, request: Request) -> Response:
        body = await self._record(request)
        if "input" not in body:
            error = {"message": "input is required", "type": "invalid_request_error"}
            return JSONResponse({"error": {**error, "param": "input", "code": None}}, 400)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(str(text))), 0.5, -1.0]}
            for i, text in enumerate(inputs)
        ]
        usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
        return JSONResponse(
            {"object": "list", "data": data, "model": body["model"], "usage": usage}
        )

    async def _chat(self, request: Request) -> Response:
        body = await self._record(request)
        model = body["model"]
        failure = await self._failure(model)
        if failure is not None:
            return failure
        try:
            answer = _completion(body)
        except (KeyError, IndexError, TypeError, AttributeError):  # as a real upstream would
            error = {"message": "malformed request", "type": "invalid_request_error"}
            return JSONResponse({"error": {**error, "param": None, "code": None}}, 400)
        if body.get("stream"):
            return StreamingResponse(_stream(body), media_type="text/event-stream")
        response = JSONResponse(answer)
        if model == "fake-cookie":  # an upstream that tries to keep state in the client
            response.set_cookie("upstream_session", "secret-of-the-first-caller")
        return response

    async def _failure(self, model: str) -> Response | None:
        if model == "fake-slow":
            await asyncio.sleep(SLOW_SECONDS)
        if model == "fake-500" or (model == "fake-flaky" and self.calls[model] % 2 == 1):
            error = {"message": "upstream exploded", "type": "server_error", "code": None}
            return JSONResponse({"error": error}, status_code=500)
        if model == "fake-garbage":
            return Response(b"<html>not json{", media_type="application/json")
        return None


async def _models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": "fake-chat", "object": "model"}]})


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body["messages"]):
        if message["role"] == "user" and isinstance(message.get("content"), str):
            return message["content"]
    return ""


def _texts(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if isinstance(m.get("content"), str)]


def _mail_arguments(body: dict[str, Any]) -> str:
    found = [m.group(1) for text in _texts(body) for m in _INSTRUCTION.finditer(text)]
    return json.dumps({"to": found[0] if found else "nobody@example.com", "body": "as requested"})


def _tool_calls(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = body.get("tools") or []
    if body["model"] not in ("fake-tools", "fake-parallel", "fake-drop", "fake-mailer"):
        return []
    chosen = tools if body["model"] == "fake-parallel" else tools[:1]
    arguments = _mail_arguments(body) if body["model"] == "fake-mailer" else ARGUMENTS
    return [
        {
            "id": f"call_{i}_{tool['function']['name']}",
            "type": "function",
            "function": {"name": tool["function"]["name"], "arguments": arguments},
        }
        for i, tool in enumerate(chosen)
    ]


def _text(body: dict[str, Any]) -> str:
    if body.get("response_format", {}).get("type") == "json_object":
        return json.dumps({"echo": _last_user_text(body)})
    if body["model"] in ("fake-parrot", "fake-linger"):
        texts = _texts(body)
        return f"Summary: {texts[-1] if texts else ''}"
    return f"echo: {_last_user_text(body)}"


def _usage() -> dict[str, int]:
    return {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}


def _completion(body: dict[str, Any]) -> dict[str, Any]:
    calls = _tool_calls(body)
    message: dict[str, Any] = {"role": "assistant", "content": None if calls else _text(body)}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": body["model"],
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
        ],
        "usage": _usage(),
    }


def _sse(data: Any) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


def _chunk(body: dict[str, Any], delta: dict[str, Any], finish: str | None = None) -> bytes:
    return _sse(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": body["model"],
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def _stream(body: dict[str, Any]) -> AsyncIterator[bytes]:
    model = body["model"]
    if model == "fake-garbage":
        yield b"data: {this is not json\n\n"
        return
    calls = _tool_calls(body)
    yield _chunk(body, {"role": "assistant", "content": ""})
    text = "Let me check. " if calls else _text(body)
    for piece in _pieces(text, 4):
        yield _chunk(body, {"content": piece})
        if model == "fake-stall":
            await asyncio.sleep(SLOW_SECONDS)
    for k, call in enumerate(calls):
        head = {
            "index": k,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        yield _chunk(body, {"tool_calls": [head]})
        for piece in _pieces(call["function"]["arguments"], 9):
            yield _chunk(body, {"tool_calls": [{"index": k, "function": {"arguments": piece}}]})
            if model == "fake-drop":
                raise ConnectionResetError("fake upstream drops the connection")
    if model == "fake-linger":
        await asyncio.sleep(SLOW_SECONDS)
    yield _chunk(body, {}, "tool_calls" if calls else "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        yield _sse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": model,
                "choices": [],
                "usage": _usage(),
            }
        )
    yield b"data: [DONE]\n\n"
