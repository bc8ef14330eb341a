"""API keys (stored as sha256 hashes), per-key rate limits and concurrency limits.

Where the limits are counted is a seam (:class:`Limits`): in this process (:class:`LocalLimits`,
the default), or in PostgreSQL so that they hold across replicas (``proxy/pg_state.py``).
"""

from __future__ import annotations

import hashlib
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Protocol

from labelgate.proxy.config import KeyEntry, RateLimit
from labelgate.proxy.context import AGENT_HEADER, Caller
from labelgate.proxy.errors import ProxyError
from labelgate.proxy.header_values import text_of_header

ANONYMOUS = "anonymous"


def hash_key(key: str) -> str:
    """What the config stores for a key: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _auth_error(message: str) -> ProxyError:
    return ProxyError(401, message, type="authentication_error", code="invalid_api_key")


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("api-key") or None  # Azure-style clients


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; one token per request."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, limit: RateLimit) -> None:
        self.rate = limit.requests_per_second
        self.burst = float(limit.burst)
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0.0 if a token was taken, else the seconds until one is due."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class KeyState:
    """Limits of one key. The event loop is single-threaded, so plain counters suffice."""

    __slots__ = ("bucket", "entry", "in_flight")

    def __init__(self, entry: KeyEntry | None) -> None:
        self.entry = entry
        limit = entry.rate_limit if entry else None
        self.bucket = TokenBucket(limit) if limit else None
        self.in_flight = 0

    def admit(self) -> None:
        """Take a rate token and a concurrency slot, or raise 429. Pair with ``release``."""
        if self.bucket is not None:
            wait = self.bucket.take()
            if wait > 0:
                raise rate_limited(wait)
        cap = self.entry.max_concurrency if self.entry else None
        if cap is not None and self.in_flight >= cap:
            raise too_many(cap)
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1


def rate_limited(wait: float) -> ProxyError:
    return ProxyError(
        429,
        f"rate limit exceeded for this key; retry in {wait:.2f}s",
        type="rate_limit_error",
        code="rate_limit_exceeded",
        headers={"retry-after": str(max(1, math.ceil(wait)))},
    )


def too_many(cap: int) -> ProxyError:
    return ProxyError(
        429,
        f"too many concurrent requests for this key (limit {cap})",
        type="rate_limit_error",
        code="concurrency_limit_exceeded",
        headers={"retry-after": "1"},
    )


class Slot(Protocol):
    """An admitted request's share of its key's limits: released once, when it ends."""

    def release(self) -> None: ...


class Limits(ABC):
    """Admits a request against its key's rate limit and concurrency cap."""

    @abstractmethod
    async def admit(self, key: KeyState) -> Slot:
        """A slot, or ``ProxyError`` 429 (over a limit) / 503 (limits cannot be counted)."""


class LocalLimits(Limits):
    """Counted in this process: each replica admits up to the full limits by itself."""

    async def admit(self, key: KeyState) -> Slot:
        key.admit()
        return key


class KeyRing:
    def __init__(self, keys: list[KeyEntry]) -> None:
        self._by_hash = {entry.key_hash: KeyState(entry) for entry in keys}
        self._anonymous = KeyState(None)

    @property
    def open(self) -> bool:
        """No keys configured: everyone is admitted (the server binds loopback only)."""
        return not self._by_hash

    def authenticate(self, headers: Mapping[str, str]) -> tuple[Caller, KeyState]:
        if self.open:
            agent = text_of_header(headers.get(AGENT_HEADER, "")).strip() or ANONYMOUS
            return Caller(agent_id=agent), self._anonymous
        token = bearer_token(headers)
        if token is None:
            raise _auth_error("missing API key: send `Authorization: Bearer <key>`")
        digest = hashlib.sha256(token.encode()).hexdigest()
        state = self._by_hash.get(digest)
        if state is None or state.entry is None:
            raise _auth_error("invalid API key")
        entry = state.entry
        caller = Caller(
            agent_id=entry.agent_id,
            assertions=entry.assertions,
            key_id=digest[:12],
            authenticated=True,
            may_raise=entry.may_raise,
        )
        return caller, state
