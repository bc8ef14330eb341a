"""Deployments, retries, fallbacks and timeouts: which upstream answers a model name."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from labelgate.guard.models import LOCAL_MODEL_NAME, ChatModel, LocalModel
from labelgate.proxy.config import ModelEntry, ProxyConfig
from labelgate.proxy.errors import ProxyError
from labelgate.proxy.upstream import (
    Batch,
    ChatModelUpstream,
    LiteLLMUpstream,
    PassthroughUpstream,
    Upstream,
    UpstreamError,
)
from labelgate.proxy.upstream_clients import UpstreamClients

log = logging.getLogger("labelgate.proxy")
T = TypeVar("T")


@dataclass(slots=True)
class Deployment:
    model_name: str
    model: str  # what the upstream is asked for
    upstream: Upstream
    timeout: float
    stream_timeout: float
    retries: int


def build_deployment(
    entry: ModelEntry,
    config: ProxyConfig,
    clients: UpstreamClients,
    models: dict[str, ChatModel],
) -> Deployment:
    params = entry.litellm_params
    upstream: Upstream
    model = params.model
    if model in models:
        upstream = ChatModelUpstream(models[model], model)
    elif model == LOCAL_MODEL_NAME:
        upstream = ChatModelUpstream(models.setdefault(model, LocalModel()), model)
    elif params.uses_passthrough():
        if params.api_base is None:
            raise ValueError(f"{entry.model_name}: passthrough needs an api_base")
        upstream = PassthroughUpstream(clients, params.api_base, params.api_key, config.tls(entry))
        model = model.removeprefix("openai/")
    else:
        extra: dict[str, Any] = {
            k: v for k, v in (("api_base", params.api_base), ("api_key", params.api_key)) if v
        }
        verify = config.tls(entry).verify
        if verify is not True:  # litellm's own clients verify as asked (a client cert: no)
            extra["ssl_verify"] = verify
        upstream = LiteLLMUpstream(model, {**extra, **params.extra_params()})
    return Deployment(
        model_name=entry.model_name,
        model=model,
        upstream=upstream,
        timeout=params.timeout,
        stream_timeout=params.stream_timeout or params.timeout,
        retries=config.num_retries(entry),
    )


class Router:
    def __init__(self, config: ProxyConfig, deployments: list[Deployment]) -> None:
        self._backoff = config.router_settings.retry_backoff
        self._by_name: dict[str, list[Deployment]] = {}
        for dep in deployments:
            self._by_name.setdefault(dep.model_name, []).append(dep)
        self._chains = {name: self._chain(config, name) for name in self._by_name}

    def _chain(self, config: ProxyConfig, name: str) -> list[Deployment]:
        chain = list(self._by_name[name])
        for fallback in config.fallbacks(name):
            chain.extend(self._by_name.get(fallback, []))
        return chain

    def names(self) -> list[str]:
        return list(self._by_name)

    def chain(self, name: str) -> list[Deployment]:
        chain = self._chains.get(name)
        if chain is None:
            raise ProxyError(
                404,
                f"The model `{name}` does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        return chain

    async def _attempts(
        self, name: str, call: Callable[[Deployment], Awaitable[T]]
    ) -> tuple[T, Deployment]:
        """Each deployment in the chain, each retried on transient errors, until one answers."""
        last: UpstreamError | None = None
        for dep in self.chain(name):
            for attempt in range(dep.retries + 1):
                if attempt:
                    await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
                try:
                    return await call(dep), dep
                except UpstreamError as exc:
                    last = exc
                    log.warning("upstream %s (%s) failed: %s", dep.model_name, dep.model, exc)
                    if exc.client_fault:
                        raise exc.to_proxy_error() from None
                    if not exc.retryable:
                        break
        assert last is not None  # a chain is never empty
        raise last.to_proxy_error()

    async def complete(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        async def call(dep: Deployment) -> dict[str, Any]:
            try:
                async with asyncio.timeout(dep.timeout):
                    return await dep.upstream.complete({**body, "model": dep.model}, dep.timeout)
            except TimeoutError:
                raise _timed_out(dep.timeout) from None

        return (await self._attempts(name, call))[0]

    async def embed(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        async def call(dep: Deployment) -> dict[str, Any]:
            try:
                async with asyncio.timeout(dep.timeout):
                    return await dep.upstream.embed({**body, "model": dep.model}, dep.timeout)
            except TimeoutError:
                raise _timed_out(dep.timeout) from None

        return (await self._attempts(name, call))[0]

    async def open_stream(
        self, name: str, body: dict[str, Any]
    ) -> tuple[Batch, AsyncIterator[Batch]]:
        """The first batch of chunks and the rest. Retries and fallbacks apply until the first
        chunk."""

        async def call(dep: Deployment) -> tuple[Batch, AsyncIterator[Batch]]:
            chunks = _paced(
                dep.upstream.stream({**body, "model": dep.model}, dep.stream_timeout),
                dep.stream_timeout,
            )
            try:
                first = await anext(chunks)
            except StopAsyncIteration:
                raise UpstreamError("garbage", "upstream stream was empty") from None
            except BaseException:
                await chunks.aclose()
                raise
            return first, chunks

        return (await self._attempts(name, call))[0]


async def _paced(chunks: AsyncIterator[Batch], timeout: float) -> AsyncGenerator[Batch, None]:
    """Each batch of chunks must come within ``timeout`` seconds of being asked for.

    One watchdog timer per stream, moved only when it fires: an ``asyncio.timeout`` around
    each batch cost about 5% of a streamed answer's CPU in the proxy."""
    loop = asyncio.get_running_loop()
    waiting: asyncio.Task[Any] | None = None  # the task awaiting a batch, while it waits
    asked = 0.0
    stalled = False
    timer: asyncio.TimerHandle  # the watchdog, set below

    def watch() -> None:
        nonlocal timer, stalled
        if waiting is not None and loop.time() - asked >= timeout:
            stalled = True
            waiting.cancel()
        else:
            timer = loop.call_at((asked if waiting is not None else loop.time()) + timeout, watch)

    timer = loop.call_at(loop.time() + timeout, watch)
    iterator = aiter(chunks)
    try:
        while True:
            # The first batch is awaited in the task that opens the stream, the rest in the
            # response's: the task is looked up each time.
            waiting, asked = asyncio.current_task(loop), loop.time()
            try:
                batch = await anext(iterator)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if stalled and waiting is not None and waiting.uncancel() == 0:
                    raise _timed_out(timeout, "stream stalled") from None
                raise
            finally:
                waiting = None
            yield batch
    finally:
        timer.cancel()
        closer = getattr(iterator, "aclose", None)
        if closer is not None:
            await closer()


def _timed_out(seconds: float, what: str = "timed out") -> UpstreamError:
    return UpstreamError("timeout", f"upstream {what} after {seconds:g}s")
