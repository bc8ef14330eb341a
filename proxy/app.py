"""The Starlette app: OpenAI's endpoints in front of the router, with the guard hook between."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import orjson
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from labelgate.guard.ids import new_id
from labelgate.guard.models import ChatModel, LocalModel, import_litellm
from labelgate.guard.state import StateUnavailable
from labelgate.proxy.auth import KeyRing, Slot
from labelgate.proxy.browser import BrowserShield
from labelgate.proxy.config import ProxyConfig
from labelgate.proxy.context import Caller, RequestContext, session_in_body, session_of
from labelgate.proxy.errors import (
    ProxyError,
    bad_request,
    guard_error,
    not_ready,
    state_unavailable,
)
from labelgate.proxy.header_values import header_json, header_text
from labelgate.proxy.hook import (
    GatewayHook,
    GuardedResponse,
    Outcome,
    PassThroughHook,
    PolicyDenied,
)
from labelgate.proxy.refusals import RefusalLog
from labelgate.proxy.router import Router, build_deployment
from labelgate.proxy.schemas import ChatCompletionRequest, EmbeddingRequest, parse_request
from labelgate.proxy.shared import SharedState, open_state
from labelgate.proxy.streaming import DONE, HeldStream, sse
from labelgate.proxy.upstream import (
    Batch,
    ChatModelUpstream,
    LiteLLMUpstream,
    UpstreamError,
    WireBatch,
)
from labelgate.proxy.upstream_clients import UpstreamClients

log = logging.getLogger("labelgate.proxy")
T = TypeVar("T")

Endpoint = Callable[[Request], Awaitable[Response]]
ShutdownCallback = Callable[[], Awaitable[None]]

LABEL_HEADER = "x-labelgate-label"
DECISIONS_HEADER = "x-labelgate-decisions"
SESSION_RESPONSE_HEADER = "x-labelgate-session"
REQUEST_ID_HEADER = "x-request-id"


class ProxyState:
    """Everything a request needs, built once per app."""

    def __init__(
        self, config: ProxyConfig, hook: GatewayHook | None, models: dict[str, ChatModel]
    ) -> None:
        self.config = config
        self.hook: GatewayHook = hook or PassThroughHook()
        self.keys = KeyRing(config.keys)
        # approvals, key limits and fingerprints: this process's, or shared by replicas
        self.shared: SharedState = open_state(config.state)
        self.max_body = config.server.max_request_bytes
        # The pass-through upstreams' clients (a pool, httpx through a proxy); the router
        # bounds every call.
        self.client = UpstreamClients(max_connections=512)
        deployments = [build_deployment(e, config, self.client, models) for e in config.model_list]
        self.router = Router(config, deployments)
        self.needs_litellm = any(isinstance(d.upstream, LiteLLMUpstream) for d in deployments)
        self.local_models = [
            d.upstream.model
            for d in deployments
            if isinstance(d.upstream, ChatModelUpstream)
            and isinstance(d.upstream.model, LocalModel)
        ]
        self.ready = False
        self.not_ready_reason = "starting"
        self.created = int(time.time())
        self.refusals = RefusalLog(config.guard.refusal_records, self._record_refusal)
        self.openapi: dict[str, Any] | None = None  # built on first request

    async def _record_refusal(self, ctx: RequestContext, error: ProxyError) -> None:
        await finish_failed(self.hook, ctx, error, None)


# --------------------------------------------------------------------------- helpers


_HEADERS = "labelgate.headers"
_CONTEXT = "labelgate.context"  # scope: the request's RequestContext, once made


def header_map(scope: Scope) -> Mapping[str, str]:
    """The request's headers as a dict (names in lower case; of a repeated header, the first),
    built once: a request reads half a dozen, and Starlette's ``Headers`` scans them all for
    each."""
    found: dict[str, str] | None = scope.get(_HEADERS)
    if found is None:
        raw = reversed(scope["headers"])
        found = scope[_HEADERS] = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw}
    return found


def headers_of(request: Request) -> Mapping[str, str]:
    return header_map(request.scope)


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON, refusing (413) more than ``limit`` bytes before reading them all.

    Read from ASGI's ``receive`` as it comes (Starlette's ``Request.stream`` adds a generator
    per request around the same loop)."""
    too_large = ProxyError(413, f"request body larger than {limit} bytes", code="request_too_large")
    declared = headers_of(request).get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    parts: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        part: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(part)
        if size > limit:
            raise too_large
        parts.append(part)
    try:
        return orjson.loads(parts[0] if len(parts) == 1 else b"".join(parts))
    except orjson.JSONDecodeError as exc:
        raise bad_request(
            f"the request body is not valid JSON: {exc}", code="invalid_json"
        ) from None


def guard_headers(ctx: RequestContext, guarded: GuardedResponse | None = None) -> dict[str, str]:
    """The response's labelgate headers; every value safe whatever the client sent (the
    session id may come from ``user``: percent-encoded, proxy/header_values.py)."""
    headers = {
        SESSION_RESPONSE_HEADER: header_text(ctx.session_id),
        REQUEST_ID_HEADER: ctx.request_id,
    }
    if guarded is not None:
        if guarded.label is not None:
            headers[LABEL_HEADER] = header_json(guarded.label)
        if guarded.decisions:
            headers[DECISIONS_HEADER] = header_json(guarded.decisions)
        headers.update({name: header_text(value) for name, value in guarded.headers.items()})
    return headers


def json_response(
    data: Any, headers: Mapping[str, str] | None = None, background: BackgroundTask | None = None
) -> Response:
    return Response(
        orjson.dumps(data), headers=headers, media_type="application/json", background=background
    )


def _context(request: Request, caller: Any, endpoint: str) -> RequestContext:
    """The context before the body is read (so a request with a bad body is recorded too)."""
    headers = headers_of(request)
    session_id, source, trace_id = session_of(headers, None)
    ctx = request.scope[_CONTEXT] = RequestContext(
        request_id=new_id(),
        caller=caller,
        session_id=session_id,
        session_source=source,
        endpoint=endpoint,
        trace_id=trace_id,
        traceparent=headers.get("traceparent"),
    )
    return ctx


UNAUTHENTICATED = "unauthenticated"


async def admitted(
    state: ProxyState, request: Request, endpoint: str
) -> tuple[RequestContext, Slot]:
    """The caller, authenticated and given a slot of its key's limits, and the request's
    context. A refusal (401, 429; 503 when shared limits cannot be counted) is raised;
    ``_with_errors`` records it (rate-bounded)."""
    caller, key = state.keys.authenticate(headers_of(request))
    ctx = _context(request, caller, endpoint)
    slot = await state.shared.limits.admit(key)
    return ctx, slot


def _bind_body(ctx: RequestContext, body: Any) -> None:
    """What the body says about the session, the model and the extension."""
    if not isinstance(body, Mapping):
        return
    if ctx.session_source == "generated":  # no header named one: the body may
        ctx.session_id, ctx.session_source = session_in_body(body) or (ctx.session_id, "generated")
    labelgate = body.get("labelgate")
    ctx.model = str(body.get("model", ""))
    ctx.stream = bool(body.get("stream"))
    ctx.labelgate = labelgate if isinstance(labelgate, Mapping) else None


def _denied(denied: PolicyDenied) -> ProxyError:
    headers = {DECISIONS_HEADER: header_json(denied.decisions)} if denied.decisions else {}
    return ProxyError(
        403, denied.message, type="policy_denied", code="policy_denied", headers=headers
    )


async def _before(
    hook: GatewayHook, ctx: RequestContext, chat: ChatCompletionRequest
) -> ChatCompletionRequest:
    try:
        return await hook.before_call(ctx, chat)
    except ProxyError:
        raise  # the hook's own answer (e.g. 400 for a malformed extension field)
    except PolicyDenied as denied:
        raise _denied(denied) from None
    except StateUnavailable as exc:  # the shared state failed: no check, so no answer
        raise state_unavailable(exc) from None
    except Exception:
        log.exception("guard before_call failed (request %s)", ctx.request_id)
        raise guard_error("the guard failed while checking the request") from None


async def _after(
    hook: GatewayHook, ctx: RequestContext, chat: ChatCompletionRequest, response: dict[str, Any]
) -> GuardedResponse:
    try:
        guarded = await hook.after_call(ctx, chat, response)
    except ProxyError:
        raise
    except PolicyDenied as denied:  # deny_mode "error": the whole answer is refused
        raise _denied(denied) from None
    except StateUnavailable as exc:
        raise state_unavailable(exc) from None
    except Exception:
        log.exception("guard after_call failed (request %s)", ctx.request_id)
        raise guard_error("the guard failed while checking the answer") from None
    if not isinstance(guarded, GuardedResponse):
        raise guard_error("the guard returned no verdict")
    return guarded


async def _during(
    hook: GatewayHook,
    ctx: RequestContext,
    call: Coroutine[Any, Any, T],
    discard: Callable[[T], Awaitable[None]] | None = None,
) -> T:
    """The upstream call's result; the hook's ``pending`` work runs while the call is out
    (sent, not yet answered), so it costs the client no time, and what that work left to
    await runs once the call has answered. If the work fails, the call is abandoned
    (``discard`` closes a result that came anyway) and the request fails closed."""
    work = hook.pending(ctx)
    if work is None:
        return await call
    caller = asyncio.current_task()
    assert caller is not None
    failed: list[BaseException] = []
    later: Callable[[], Awaitable[None]] | None = None
    ran = answered = False

    def run() -> None:
        nonlocal ran, later
        ran = True
        try:
            later = work()
        except Exception as exc:
            failed.append(exc)
            if not answered:
                caller.cancel()  # lands inside the call, which closes what it opened

    # At the loop's next turn the call has sent its request and waits for the answer: the
    # work runs then, with no task for the call (a task cost a loop turn before the send).
    scheduled = asyncio.get_running_loop().call_soon(run)
    try:
        result: T | None = await call
    except asyncio.CancelledError:
        scheduled.cancel()
        if not failed or caller.uncancel() > 0:
            raise
        result = None
    except BaseException:
        scheduled.cancel()
        raise
    answered = True
    if not ran:  # answered without waiting: the work is done now, still before the answer
        scheduled.cancel()
        run()
    if later is not None and not failed:
        try:
            await later()
        except Exception as exc:
            failed.append(exc)
        except BaseException:  # cancelled (the client left): close what was opened
            if result is not None and discard is not None:
                await discard(result)
            raise
    if failed:
        log.error("guard failed while labeling request %s", ctx.request_id, exc_info=failed[0])
        if result is not None and discard is not None:
            await discard(result)
        if isinstance(failed[0], ProxyError):  # e.g. an earlier answer could not be stored
            raise failed[0]
        if isinstance(failed[0], StateUnavailable):  # the shared state failed: say so
            raise state_unavailable(failed[0]) from None
        raise guard_error("the guard failed while checking the request") from None
    return result  # type: ignore[return-value]


async def finish_request(hook: GatewayHook, ctx: RequestContext, outcome: Outcome) -> None:
    """Tell the hook how the request ended, exactly once; a failure fails closed."""
    if ctx.state.get("_finished"):
        return
    ctx.state["_finished"] = True
    try:
        await hook.finish(ctx, outcome)
    except Exception:
        log.exception("guard could not record request %s", ctx.request_id)
        raise guard_error("the guard could not record the request") from None


def _admit(hook: GatewayHook, ctx: RequestContext, outcome: Outcome | None) -> None:
    """Before an answer (``outcome``) or a stream's first byte (None) leaves: record it ahead
    (``GatewayHook.admit``). If it cannot be, it does not leave (fail closed)."""
    try:
        hook.admit(ctx, outcome)
    except Exception:
        log.exception("guard cannot record request %s", ctx.request_id)
        raise guard_error("the guard cannot record the request") from None


async def _finish_sent(hook: GatewayHook, ctx: RequestContext, outcome: Outcome) -> None:
    """The record of an answer already sent (admitted before): off the client's latency."""
    with contextlib.suppress(ProxyError):  # logged by finish_request; the hook stops admitting
        await finish_request(hook, ctx, outcome)


async def finish_failed(
    hook: GatewayHook, ctx: RequestContext, exc: BaseException, request: Any
) -> None:
    """Record a request that failed; the client gets the original error whatever happens."""
    error = exc if isinstance(exc, ProxyError) else ProxyError(500, str(exc), type="server_error")
    with contextlib.suppress(ProxyError):  # already logged; the request fails anyway
        await finish_request(hook, ctx, Outcome.failed(error, request))


def _extension(ctx: RequestContext, guarded: GuardedResponse) -> dict[str, Any]:
    return {
        "label": guarded.label,
        "decisions": guarded.decisions,
        "session_id": ctx.session_id,
        "request_id": ctx.request_id,
    }


# --------------------------------------------------------------------------- streaming


class ClosingStreamingResponse(StreamingResponse):
    """An event stream that runs ``on_close`` however it ends (done, client gone, or never
    started), and stops as soon as the client leaves.

    Starlette watches for the client leaving in an anyio task group when the server speaks
    ASGI before 2.4 (uvicorn does): about 0.3 ms before the first byte per stream on the bench
    machine. Here one plain task watches, and cancels the stream when the client is gone.
    """

    def __init__(
        self,
        content: AsyncIterator[bytes],
        on_close: Callable[[], Awaitable[None]],
        headers: Mapping[str, str],
    ) -> None:
        super().__init__(content, headers=headers, media_type="text/event-stream")
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.current_task()
        assert streaming is not None
        gone = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            streaming.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            watcher.cancel()  # the end of the response ends ``receive`` too: not a departure
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not gone:
                raise
            streaming.uncancel()  # the client left: the stream ends here, quietly
        finally:
            watcher.cancel()
            await self._on_close()


async def _events(
    state: ProxyState,
    ctx: RequestContext,
    chat: ChatCompletionRequest,
    first: Batch,
    rest: AsyncIterator[Batch],
) -> AsyncGenerator[bytes, None]:
    held = HeldStream(hold_text=ctx.hold_text)
    state.hook.stream_opened(ctx, held)  # before any of its text goes out
    now = _passed(held, first)
    if now:
        yield now
    try:
        async for batch in rest:
            now = _passed(held, batch)
            if now:  # one write per batch (at most two per upstream read), not per chunk
                yield now
    except UpstreamError as exc:
        # Held tool calls die with the stream: never half a call.
        error = exc.to_proxy_error()
        await finish_failed(state.hook, ctx, error, chat)
        yield sse(error.body())
        return
    try:
        guarded = await _after(state.hook, ctx, chat, held.assembled())
        closing = held.closing_chunks(guarded.response, _extension(ctx, guarded))
        outcome = Outcome("ok", chat, guarded.response)
        _admit(state.hook, ctx, outcome)
        ctx.state["outcome"] = outcome  # recorded once sent
    except ProxyError as exc:
        await finish_failed(state.hook, ctx, exc, chat)
        yield sse(exc.body())
        return
    except Exception as exc:
        log.exception("guard verdict could not be applied to stream %s", ctx.request_id)
        error = guard_error(f"the guard verdict could not be applied: {exc}")
        await finish_failed(state.hook, ctx, error, chat)
        yield sse(error.body())
        return
    yield b"".join(sse(chunk) for chunk in closing) + DONE


async def _close_rest(opened: tuple[Batch, AsyncIterator[Batch]]) -> None:
    await opened[1].aclose()  # type: ignore[attr-defined]


def _passed(held: HeldStream, batch: Batch) -> bytes:
    """The SSE bytes of what may go out now from ``batch``; a chunk that passes unchanged
    goes out as the upstream wrote it, when it came off the wire."""
    lines = batch.lines if isinstance(batch, WireBatch) else None
    out = []
    for i, chunk in enumerate(batch):
        now = held.feed(chunk)
        if now is None:
            continue
        out.append(b"data: " + lines[i] + b"\n\n" if now is chunk and lines else sse(now))
    return b"".join(out)


def _stream_response(
    state: ProxyState,
    ctx: RequestContext,
    chat: ChatCompletionRequest,
    opened: tuple[Batch, AsyncIterator[Batch]],
    key: Slot,
) -> Response:
    first, rest = opened
    events = _events(state, ctx, chat, first, rest)
    closed = False

    async def on_close() -> None:
        nonlocal closed
        if closed:
            return
        closed = True
        key.release()
        try:
            await events.aclose()
            await rest.aclose()  # type: ignore[attr-defined]
        finally:
            state.hook.stream_closed(ctx)
            sent: Outcome | None = ctx.state.get("outcome")
            if sent is not None:
                await _finish_sent(state.hook, ctx, sent)
            else:  # ended before the verdict (client gone, server stopping): an error
                gone = ProxyError(
                    499, "the stream ended before the guard's verdict", type="aborted"
                )
                await finish_failed(state.hook, ctx, gone, chat)

    return ClosingStreamingResponse(events, on_close, guard_headers(ctx))


# --------------------------------------------------------------------------- endpoints


def _state(request: Request) -> ProxyState:
    return request.app.state.proxy


async def chat_completions(request: Request) -> Response:
    state = _state(request)
    ctx, key = await admitted(state, request, "chat.completions")
    chat: ChatCompletionRequest | None = None
    streaming = False
    try:
        body = await read_json(request, state.max_body)
        _bind_body(ctx, body)
        chat = parse_request(ChatCompletionRequest, body)
        state.router.chain(chat.model)  # 404 before the guard spends anything
        chat = await _before(state.hook, ctx, chat)
        upstream_body = chat.upstream_body(chat.model)
        if chat.stream:
            opened = await _during(
                state.hook, ctx, state.router.open_stream(chat.model, upstream_body), _close_rest
            )
            try:  # before its first byte, or not at all
                _admit(state.hook, ctx, None)
            except ProxyError:
                await _close_rest(opened)
                raise
            streaming = True  # from here the response releases the key when it ends
            return _stream_response(state, ctx, chat, opened, key)
        answer = await _during(state.hook, ctx, state.router.complete(chat.model, upstream_body))
        guarded = await _after(state.hook, ctx, chat, answer)
        outcome = Outcome("ok", chat, guarded.response)
        _admit(state.hook, ctx, outcome)
        record = BackgroundTask(_finish_sent, state.hook, ctx, outcome)
        return json_response(guarded.response, guard_headers(ctx, guarded), background=record)
    except BaseException as exc:
        await finish_failed(state.hook, ctx, exc, chat)
        if isinstance(exc, ProxyError):  # so a failure can be found in the audit trail
            exc.headers.update(guard_headers(ctx))
        raise
    finally:
        if not streaming:
            key.release()


async def embeddings(request: Request) -> Response:
    state = _state(request)
    ctx, key = await admitted(state, request, "embeddings")
    req: EmbeddingRequest | None = None
    try:
        body = await read_json(request, state.max_body)
        _bind_body(ctx, body)
        req = parse_request(EmbeddingRequest, body)
        await _guarded_call(ctx, state.hook.before_embeddings(ctx, req))
        answer = await state.router.embed(req.model, req.upstream_body(req.model))
        await finish_request(state.hook, ctx, Outcome("ok", req, answer))
        return json_response(answer, guard_headers(ctx))
    except BaseException as exc:
        await finish_failed(state.hook, ctx, exc, req)
        if isinstance(exc, ProxyError):
            exc.headers.update(guard_headers(ctx))
        raise
    finally:
        key.release()


async def _guarded_call(ctx: RequestContext, call: Awaitable[Any]) -> Any:
    try:
        return await call
    except ProxyError:
        raise
    except PolicyDenied as denied:
        raise _denied(denied) from None
    except Exception:
        log.exception("guard failed on request %s", ctx.request_id)
        raise guard_error("the guard failed while checking the request") from None


async def list_models(request: Request) -> Response:
    state = _state(request)
    state.keys.authenticate(headers_of(request))
    data = [
        {"id": name, "object": "model", "created": state.created, "owned_by": "labelgate"}
        for name in state.router.names()
    ]
    return json_response({"object": "list", "data": data})


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = _state(request)
    if not state.ready:
        raise not_ready(f"not ready: {state.not_ready_reason}")
    problem = state.shared.problem()  # a load balancer stops sending while it lasts
    if problem is not None:
        raise not_ready(f"not ready: {problem}")
    return json_response({"status": "ready", "models": state.router.names()})


async def openapi(request: Request) -> Response:
    """``GET /openapi.json``: the public endpoints as OpenAPI 3.1 (proxy/openapi.py)."""
    state = _state(request)
    state.keys.authenticate(headers_of(request))  # what /v1/models shows, to the same callers
    if state.openapi is None:
        from labelgate.proxy.openapi import openapi_schema  # the guard's models: on first use

        guard = any(getattr(r, "path", "") == "/v1/labelgate/documents" for r in request.app.routes)
        state.openapi = openapi_schema(state.router.names(), guard=guard, keys=not state.keys.open)
    return json_response(state.openapi)


def _with_errors(
    endpoint: Endpoint, name: str, *, record: bool = True, stamp: bool = True
) -> Endpoint:
    """The endpoint, its ``ProxyError`` answered the OpenAI way with ``X-Request-Id`` and,
    unless ``record`` is off (probes), recorded if the endpoint did not record it. ``stamp``:
    give a success an ``X-Request-Id`` too (the chat and embeddings endpoints set their own)."""

    async def wrapped(request: Request) -> Response:
        try:
            response = await endpoint(request)
        except ProxyError as exc:
            return await refused(request, exc, name, record=record)
        if stamp and REQUEST_ID_HEADER not in response.headers:
            ctx: RequestContext | None = request.scope.get(_CONTEXT)
            response.headers[REQUEST_ID_HEADER] = ctx.request_id if ctx else new_id()
        return response

    return wrapped


def _caller_of(state: ProxyState, request: Request) -> Caller:
    try:
        return state.keys.authenticate(headers_of(request))[0]
    except ProxyError:
        return Caller(agent_id=UNAUTHENTICATED)


async def refused(
    request: Request, error: ProxyError, endpoint: str, *, record: bool = True
) -> Response:
    """The error's response, with ``X-Request-Id`` (and the session); a request whose failure
    the endpoint did not record gets a compact record, rate-bounded (proxy/refusals.py)."""
    state = _state(request)
    ctx: RequestContext | None = request.scope.get(_CONTEXT)
    if ctx is None:
        ctx = _context(request, _caller_of(state, request), endpoint)
    if record and not ctx.state.get("_finished"):
        client = request.scope.get("client")
        await state.refusals.refused(ctx, error, client[0] if client else "unknown")
    return error.response(guard_headers(ctx))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    return await refused(request, ProxyError(exc.status_code, str(exc.detail), code=code), "http")


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    error = ProxyError(500, "internal error in the proxy", type="server_error")
    try:
        return await refused(request, error, "http")
    except Exception:  # the last resort answers whatever failed: shaped, with an id
        log.exception("the error could not be recorded")
        return error.response({REQUEST_ID_HEADER: new_id()})


# --------------------------------------------------------------------------- app


async def _warm_up(state: ProxyState) -> None:
    """Load what takes seconds (llama.cpp, litellm's import) before saying ready, off the loop."""
    try:
        if state.needs_litellm:
            state.not_ready_reason = "importing litellm"
            await asyncio.to_thread(import_litellm)
        for model in state.local_models:
            state.not_ready_reason = f"loading {model.name}"
            await model.chat([{"role": "user", "content": "hi"}], max_tokens=1)
    except Exception as exc:
        state.not_ready_reason = f"model failed to load: {exc}"
        log.error("%s", state.not_ready_reason)
        return
    state.ready = True


class Gateway(Starlette):
    """Starlette, with the OpenAI endpoints dispatched before its routing, unless a deployer
    added middleware.

    Without middleware, every request to those paths would cross five layers of Starlette's
    stack (error and exception middleware, router, route, request-response wrapper), each
    wrapping ``send``; the endpoints already answer their own errors (``_with_errors``) and
    log the unexpected ones (``_server_error``), so they are called directly. Once a deployer
    adds middleware (``create_app(middleware=...)`` or ``app.add_middleware``), every request,
    these included, goes through Starlette and so through that middleware: nothing on the
    request path skips it. Everything else, and these paths under a ``root_path``, always goes
    through Starlette. The cost of the full stack is measured in docs/performance.md.
    """

    def __init__(
        self, *args: Any, hot: Mapping[str, Endpoint], keyless: bool, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._hot = dict(hot)
        # Keyless: browsers are kept out of every path, before routing (proxy/browser.py).
        self._shield = BrowserShield() if keyless else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._shield is not None:
            refusal = self._shield.refusal(scope["method"], header_map(scope))
            if refusal is not None:
                scope["app"] = self
                request = Request(scope, receive, send)
                await (await refused(request, refusal, "http"))(scope, receive, send)
                return
        endpoint = self._hot.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None or scope["method"] != "POST" or self.user_middleware:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:  # what Starlette's error middleware would answer
            response = await _server_error(request, exc)
        await response(scope, receive, send)


def create_app(
    config: ProxyConfig,
    *,
    hook: GatewayHook | None = None,
    models: dict[str, ChatModel] | None = None,
    routes: Sequence[tuple[str, Endpoint, list[str]]] = (),
    on_shutdown: Sequence[ShutdownCallback] = (),
    state: ProxyState | None = None,
    middleware: Sequence[Middleware] = (),
) -> Starlette:
    """The gateway. ``hook`` is the guard (default: pass everything through); ``models`` maps
    litellm model strings to in-process ChatModels (tests, embedded models) and wins over any
    other route.

    ``routes`` adds endpoints (errors answered the OpenAI way); ``on_shutdown`` callbacks run
    in order after the last request, each even if an earlier one failed; ``state`` is a
    ProxyState built beforehand (when the hook needs its router); ``middleware`` (Starlette's
    ``Middleware`` entries) wraps every endpoint, the chat and embeddings ones included.
    """
    state = state or ProxyState(config, hook, dict(models or {}))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.shared.start()  # before the first request: limits and approvals are shared
        warm = asyncio.create_task(_warm_up(state))
        try:
            yield
        finally:
            state.ready = False
            state.not_ready_reason = "shutting down"
            warm.cancel()
            await state.client.aclose()
            await state.refusals.aclose()  # the summaries counted so far, before the store closes
            for callback in on_shutdown:
                try:
                    await callback()
                except Exception:
                    log.exception("shutdown step failed")
            await state.shared.aclose()

    endpoints: list[tuple[str, Endpoint, list[str]]] = [
        (
            "/chat/completions",
            _with_errors(chat_completions, "chat.completions", stamp=False),
            ["POST"],
        ),
        ("/embeddings", _with_errors(embeddings, "embeddings", stamp=False), ["POST"]),
        ("/models", _with_errors(list_models, "models"), ["GET"]),
    ]
    endpoints += [
        (path, _with_errors(fn, path.split("/{")[0].strip("/").replace("/", ".")), methods)
        for path, fn, methods in routes
    ]
    table = [
        Route(prefix + path, fn, methods=methods)
        for path, fn, methods in endpoints
        for prefix in ("/v1", "")
    ]
    table += [
        Route("/healthz", _with_errors(healthz, "healthz", record=False), methods=["GET"]),
        Route("/readyz", _with_errors(readyz, "readyz", record=False), methods=["GET"]),
        Route("/openapi.json", _with_errors(openapi, "openapi"), methods=["GET"]),
    ]
    hot = {prefix + path: fn for path, fn, _ in endpoints[:2] for prefix in ("/v1", "")}
    app = Gateway(
        routes=table,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        middleware=list(middleware),
        hot=hot,
        keyless=state.keys.open,
    )
    app.state.proxy = state
    return app
