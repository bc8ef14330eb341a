"""The faithful oracle as an OpenAI-compatible HTTP server (``labelgate eval oracle-serve``), so
that a separately running ``labelgate serve`` can put it behind the guard as any upstream:

    model_list:
      - model_name: injection-oracle
        litellm_params: {model: openai/injection-oracle, api_base: http://127.0.0.1:4100/v1}

The oracle is stateless, so one server answers every sample and every agent of every run.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from labelgate.evals.injection.oracle import ORACLE, oracle_model


def _completion(model: str, result: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": result.text or None}
    if result.tool_calls:
        message["tool_calls"] = result.tool_calls
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex[:24],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": result.finish_reason}],
        "usage": {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens,
        },
    }


def _error(status: int, message: str) -> JSONResponse:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    return JSONResponse(body, status_code=status)


async def chat(request: Request) -> JSONResponse:
    try:
        body = await request.json()
        model = str(body.get("model") or ORACLE)
        messages = list(body["messages"])
    except (ValueError, KeyError, TypeError):
        return _error(400, "a chat request needs a JSON body with messages")
    if body.get("stream"):
        return _error(400, "the oracle does not stream")
    try:
        oracle = oracle_model(model)
    except ValueError as exc:
        return _error(404, str(exc))
    return JSONResponse(_completion(model, await oracle.chat(messages)))


async def models(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [{"id": ORACLE, "object": "model"}]})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def app() -> Starlette:
    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", models),
            Route("/healthz", health),
        ]
    )
