"""The models an eval runs against, and the wrappers the runner puts around them.

- ``resolve_model``: ``local/smollm2``, any litellm model string, a scripted agent the evals
  ship (``injection-oracle``), or the same through a labelgate proxy (an OpenAI-compatible
  endpoint: litellm model ``openai/<name>``, ``api_base``: a ``ProxyModel``), or any
  OpenAI-compatible endpoint (vLLM, Ollama, a gateway: an ``EndpointModel``).
- ``CachedModel``: opt-in answer cache in ``eval_model_cache``, keyed by the whole request.
- ``call_with_retries``: retries transient errors (timeouts, connection and rate-limit errors)
  with exponential backoff; everything else fails the sample at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from typing import Any, TypeVar

from labelgate.evals.store import ResultsStore
from labelgate.guard.models import (
    ChatModel,
    ChatResult,
    LiteLLMModel,
    Message,
    ModelError,
    get_model,
)

T = TypeVar("T")

# litellm / openai / httpx exception class names that mean "try again later".
_TRANSIENT_NAMES = frozenset(
    {
        "RateLimitError",
        "APIConnectionError",
        "APITimeoutError",
        "Timeout",
        "ServiceUnavailableError",
        "InternalServerError",
        "ConnectError",
        "ReadTimeout",
        "RemoteProtocolError",
    }
)


class ProxyModel(LiteLLMModel):
    """A model served by a labelgate proxy (litellm ``openai/<name>`` at ``base_url``). A
    family that talks to the proxy itself (agent names, the guard's decision headers) reads
    where it is from these attributes."""

    def __init__(self, served: str, base_url: str, api_key: str) -> None:
        super().__init__(f"openai/{served}", api_base=base_url, api_key=api_key)
        self.served, self.base_url, self.api_key = served, base_url, api_key


class EndpointModel(LiteLLMModel):
    """A model served by any OpenAI-compatible endpoint (vLLM, Ollama, a gateway): litellm's
    ``openai/<name>`` provider at ``api_base``."""

    def __init__(self, served: str, api_base: str, api_key: str) -> None:
        model = served if served.startswith("openai/") else f"openai/{served}"
        super().__init__(model, api_base=api_base, api_key=api_key)
        self.served, self.api_base = served, api_base


def endpoint_key(env_name: str | None) -> str:
    """The API key for an endpoint, from the environment variable ``env_name``; without one,
    a placeholder (local servers such as vLLM and Ollama take any key)."""
    if env_name is None:
        return "EMPTY"
    key = os.environ.get(env_name)
    if not key:
        raise ModelError(f"the API key variable {env_name} is not set (or empty)")
    return key


# Scripted agent models the evals ship, by name prefix: "module:factory(name)".
SCRIPTED_AGENTS = {"injection-oracle": "labelgate.evals.injection.oracle:oracle_model"}


def _scripted_agent(name: str) -> ChatModel | None:
    for prefix, factory in SCRIPTED_AGENTS.items():
        if name == prefix or name.startswith(prefix + "-"):
            module, _, attr = factory.partition(":")
            make: Callable[[str], ChatModel] = getattr(importlib.import_module(module), attr)
            try:
                return make(name)
            except ValueError as exc:
                raise ModelError(str(exc)) from None
    return None


def resolve_model(
    name: str,
    *,
    via_proxy: str | None = None,
    api_key: str | None = None,
    api_base: str | None = None,
) -> ChatModel:
    """A ChatModel by name. Through a proxy, the proxy picks the upstream for ``name``; with
    ``api_base``, ``name`` is what that OpenAI-compatible endpoint serves."""
    if via_proxy:
        return ProxyModel(name, via_proxy.rstrip("/"), api_key or "labelgate")
    if api_base:
        return EndpointModel(name, api_base.rstrip("/"), api_key or "EMPTY")
    return _scripted_agent(name) or get_model(name)


def is_transient(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TimeoutError | ConnectionError):
            return True
        if type(current).__name__ in _TRANSIENT_NAMES:
            return True
        current = current.__cause__ or current.__context__
    return False


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    *,
    retries: int = 3,
    backoff: float = 0.5,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> T:
    """Await ``fn()``; on a transient error wait backoff * 2**attempt and try again."""
    for attempt in range(retries + 1):
        try:
            return await fn()
        except Exception as exc:
            if attempt >= retries or not is_transient(exc):
                raise
            if on_retry is not None:
                on_retry(attempt + 1, exc)
            await asyncio.sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")


def request_key(model: str, messages: Sequence[Message], params: dict[str, Any]) -> str:
    blob = json.dumps(
        {"model": model, "messages": list(messages), "params": params},
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class CachedModel:
    """A model whose answers are kept in the results store and replayed for equal requests."""

    def __init__(self, inner: ChatModel, store: ResultsStore) -> None:
        self.inner = inner
        self.name = inner.name
        self.store = store

    async def chat_cached(
        self, messages: Sequence[Message], **params: Any
    ) -> tuple[ChatResult, bool]:
        """The answer and whether it came from the cache (the runner reports hits)."""
        key = request_key(self.name, messages, params)
        cached = self.store.cache_get(key)
        if cached is not None:
            return ChatResult(**cached), True
        result = await self.inner.chat(messages, **params)
        request = {"messages": list(messages), **params}
        self.store.cache_put(key, self.name, request, asdict(result))
        return result, False

    async def chat(self, messages: Sequence[Message], **params: Any) -> ChatResult:
        return (await self.chat_cached(messages, **params))[0]


__all__ = [
    "CachedModel",
    "EndpointModel",
    "ModelError",
    "ProxyModel",
    "call_with_retries",
    "endpoint_key",
    "is_transient",
    "request_key",
    "resolve_model",
]
