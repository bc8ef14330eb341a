"""The proxy served in-process on a free loopback port: for evals that measure a model
guarded and unguarded in one run, for the demo, and for tests.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from labelgate.guard.models import ChatModel


class ServerThread:
    """uvicorn serving ``app`` on a free loopback port, in a daemon thread."""

    def __init__(self, app: ASGIApp) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="critical", lifespan="on", access_log=False)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the embedded proxy did not start")
            time.sleep(0.01)
        return self

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Poll /readyz: loading the local model or importing litellm takes seconds."""
        deadline = time.monotonic() + timeout
        while True:
            response = httpx.get(f"{self.url}/readyz")
            if response.status_code == 200:
                return
            if time.monotonic() > deadline:
                reason = response.json().get("error", {}).get("message", response.text)
                raise RuntimeError(f"the embedded proxy never became ready: {reason}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)
        self._sock.close()


@contextmanager
def guarded_proxy(
    model: str | Sequence[str],
    *,
    policy: Path | None = None,
    state_dir: Path | None = None,
    models: dict[str, ChatModel] | None = None,
    guard: dict[str, Any] | None = None,
) -> Iterator[str]:
    """A guarded proxy serving ``model`` (one name or several: litellm model strings,
    ``local/smollm2``, or names in ``models``), yielding its base URL (``.../v1``); shut down
    cleanly on exit."""
    from labelgate.proxy.assemble import build_app
    from labelgate.proxy.config import parse_config

    settings: dict[str, Any] = dict(guard or {})
    if policy is not None:
        settings["policy"] = str(policy)
    if state_dir is not None:
        settings["state_dir"] = str(state_dir)
    names = [model] if isinstance(model, str) else list(model)
    config = parse_config(
        {
            "model_list": [{"model_name": n, "litellm_params": {"model": n}} for n in names],
            "guard": settings,
        },
        source="embedded proxy",
    )
    server = ServerThread(build_app(config, models=models)).start()
    try:
        server.wait_ready()
        yield f"{server.url}/v1"
    finally:
        server.stop()
