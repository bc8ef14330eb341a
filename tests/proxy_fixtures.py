"""Shared fixtures for the proxy tests: real servers on loopback, in background threads.

Import the fixtures into a test module with ``from proxy_fixtures import *``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from fakes.upstream import FakeUpstream

from labelgate.guard.models import ChatModel
from labelgate.proxy.app import create_app
from labelgate.proxy.assemble import GuardRuntime, build_app
from labelgate.proxy.config import parse_config
from labelgate.proxy.embedded import ServerThread
from labelgate.proxy.hook import GatewayHook

__all__ = [
    "Guarded",
    "ServerThread",
    "async_sdk",
    "fake",
    "fake_url",
    "passthrough_config",
    "sdk",
    "serve_proxy",
    "start_guarded",
    "start_proxy",
]

FAKE_MODELS = [
    "fake-chat",
    "fake-tools",
    "fake-parallel",
    "fake-slow",
    "fake-500",
    "fake-garbage",
    "fake-drop",
    "fake-flaky",
    "fake-stall",
    "fake-parrot",
    "fake-linger",
    "fake-mailer",
    "fake-cookie",
]


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream()
    server = ServerThread(upstream.app()).start()
    upstream.url = server.url  # type: ignore[attr-defined]
    yield upstream
    server.stop()


@pytest.fixture(scope="session")
def fake_url(fake: FakeUpstream) -> str:
    return f"{fake.url}/v1"  # type: ignore[attr-defined]


def passthrough_config(
    fake_url: str, *, passthrough: bool = True, timeout: float = 0.5, **extra: Any
) -> dict[str, Any]:
    """A model_list exposing every fake mode under its own name."""
    model_list = [
        {
            "model_name": name,
            "litellm_params": {
                "model": f"openai/{name}",
                "api_base": fake_url,
                "api_key": "sk-upstream",
                "timeout": timeout,
                "passthrough": passthrough,
            },
        }
        for name in FAKE_MODELS
    ]
    return {"model_list": model_list, **extra}


def serve_proxy(
    config: dict[str, Any],
    *,
    hook: GatewayHook | None = None,
    models: dict[str, ChatModel] | None = None,
) -> ServerThread:
    server = ServerThread(create_app(parse_config(config), hook=hook, models=models)).start()
    server.wait_ready(timeout=120)
    return server


@pytest.fixture
def start_proxy() -> Iterator[Callable[..., str]]:
    """Start a proxy: ``start_proxy(config_dict, hook=None, models=None) -> base_url`` (…/v1)."""
    servers: list[ServerThread] = []

    def start(
        config: dict[str, Any],
        *,
        hook: GatewayHook | None = None,
        models: dict[str, ChatModel] | None = None,
    ) -> str:
        server = serve_proxy(config, hook=hook, models=models)
        servers.append(server)
        return f"{server.url}/v1"

    yield start
    for server in servers:
        server.stop()


def sdk(base_url: str, key: str = "sk-test", **kwargs: Any) -> openai.OpenAI:
    kwargs.setdefault("timeout", 10)
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, **kwargs)


def async_sdk(base_url: str, key: str = "sk-test", **kwargs: Any) -> openai.AsyncOpenAI:
    kwargs.setdefault("timeout", 10)
    return openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, **kwargs)


class Guarded:
    """A proxy with the label guard (``build_app``) on loopback; ``stop`` runs its shutdown."""

    def __init__(self, config: dict[str, Any], models: dict[str, ChatModel] | None) -> None:
        self.app = build_app(parse_config(config), models=models)
        self.runtime: GuardRuntime = self.app.state.guard
        self.server = ServerThread(self.app).start()
        self.server.wait_ready(timeout=120)
        self.base = self.server.url
        self.url = f"{self.server.url}/v1"
        self._stopped = False

    @property
    def audit_path(self) -> Path:
        return Path(self.runtime.writer.store.path)

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.server.stop()


@pytest.fixture
def start_guarded(tmp_path: Path) -> Iterator[Callable[..., Guarded]]:
    """``start_guarded(config_dict, guard={...}) -> Guarded``; state under ``tmp_path``."""
    started: list[Guarded] = []

    def start(
        config: dict[str, Any],
        *,
        guard: dict[str, Any] | None = None,
        models: dict[str, ChatModel] | None = None,
    ) -> Guarded:
        settings = {"state_dir": str(tmp_path / f"state{len(started)}"), **(guard or {})}
        proxy = Guarded({**config, "guard": settings}, models)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
