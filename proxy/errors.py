"""OpenAI-style errors: every failure leaves the proxy as ``{"error": {...}}``."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response


class ProxyError(Exception):
    """A failure the client sees, with its HTTP status and OpenAI error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, dict[str, str | None]]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self, extra_headers: Mapping[str, str] | None = None) -> Response:
        headers = {**self.headers, **(extra_headers or {})}
        return Response(
            orjson.dumps(self.body()),
            status_code=self.status,
            headers=headers,
            media_type="application/json",
        )


class ErrorDetail(BaseModel):
    """The fields of every error body (OpenAI's)."""

    model_config = ConfigDict(extra="forbid")

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    """``{"error": {"message", "type", "param", "code"}}``: the body of every failure (the
    OpenAPI description's error schema; tests validate error bodies against it)."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> ProxyError:
    return ProxyError(400, message, param=param, code=code)


def guard_error(message: str) -> ProxyError:
    # The guard failed: fail closed, never forward an answer it did not check.
    return ProxyError(500, message, type="guard_error", code="guard_error")


def not_ready(message: str) -> ProxyError:
    return ProxyError(503, message, type="service_unavailable", code="not_ready")


def state_unavailable(exc: Exception) -> ProxyError:
    # The shared state (PostgreSQL) failed: fail closed, saying what is down.
    return ProxyError(503, str(exc), type="service_unavailable", code="state_unavailable")
