"""OTLP export to a real collector: Arize Phoenix on loopback receives the spans of a proxy
request and of an eval run, with their GenAI attributes (queried back over its REST API)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from proxy_fixtures import *  # noqa: F403 - fixtures
from proxy_fixtures import Guarded, passthrough_config, sdk

pytestmark = pytest.mark.slow  # Phoenix takes ~20 s to start

PHOENIX = shutil.which("phoenix")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if PHOENIX is None:
        pytest.skip("arize-phoenix is not installed (pip install arize-phoenix)")
    work = tmp_path_factory.mktemp("phoenix")
    port, grpc = _free_port(), _free_port()
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(work),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = (work / "phoenix.log").open("w")
    proc = subprocess.Popen([PHOENIX, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"phoenix did not start: {(work / 'phoenix.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def phoenix_spans(url: str, want: int, predicate: Any) -> list[dict[str, Any]]:
    """Spans of the default project that match, once at least ``want`` have arrived."""
    deadline = time.monotonic() + 30
    while True:
        body = httpx.get(f"{url}/v1/projects/default/spans", params={"limit": 1000}).json()
        found = [s for s in body["data"] if predicate(s)]
        if len(found) >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_a_proxy_request_reaches_phoenix(phoenix: str, fake_url: str, tmp_path: Path) -> None:
    tracing = {"exporters": ["sqlite", "otlp-http"], "endpoint": phoenix}
    guard = {"state_dir": str(tmp_path), "tracing": tracing}
    proxy = Guarded({**passthrough_config(fake_url), "guard": guard}, None)
    try:
        client = sdk(proxy.url, default_headers={"X-Labelgate-Agent": "phoenix-check"})
        raw = client.chat.completions.with_raw_response.create(
            model="fake-chat", messages=[{"role": "user", "content": "hello phoenix"}]
        )
    finally:
        proxy.stop()  # shuts the tracer provider down: the batch is flushed
    request_id = raw.headers["x-request-id"]
    (span,) = phoenix_spans(
        phoenix, 1, lambda s: s["attributes"].get("labelgate.request.id") == request_id
    )
    attrs = span["attributes"]
    assert span["name"] == "chat fake-chat"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "fake-chat"
    assert attrs["gen_ai.agent.id"] == "phoenix-check"
    assert isinstance(attrs["gen_ai.usage.input_tokens"], int)
    assert attrs["labelgate.label.integrity"] in ("trusted", "untrusted")
    assert len(span["context"]["trace_id"]) == 32


def test_an_eval_run_reaches_phoenix(phoenix: str, tmp_path: Path) -> None:
    from labelgate.evals.family import get_family
    from labelgate.evals.runner import RunConfig, Runner
    from labelgate.evals.store import ResultsStore
    from labelgate.guard.audit.writer import AuditWriter
    from labelgate.guard.models import ScriptedModel
    from labelgate.guard.tracing import TracingConfig, setup_tracing

    db = tmp_path / "audit.db"
    writer = AuditWriter(db)
    config = TracingConfig(
        exporters=["sqlite", "otlp-http"], endpoint=phoenix, service_name="labelgate-evals"
    )
    provider = setup_tracing(config, writer)
    store = ResultsStore(db)
    model = ScriptedModel(["Action 1", "Action 2"], cycle=True)
    run = RunConfig(family="dilemmas", model="scripted", limit=1)
    summary = asyncio.run(Runner(store, provider).run(get_family("dilemmas"), model, run))
    provider.force_flush()
    provider.shutdown()
    writer.close()
    store.close()

    def of_run(s: dict[str, Any]) -> bool:
        return s["attributes"].get("labelgate.eval.run_id") == summary.run_id

    (root,) = [
        s for s in phoenix_spans(phoenix, summary.n_samples + 2, of_run) if s["name"] == "eval.run"
    ]
    trace_id = root["context"]["trace_id"]
    every = phoenix_spans(
        phoenix, 1 + 1 + 3 * summary.n_samples, lambda s: s["context"]["trace_id"] == trace_id
    )
    names = [s["name"] for s in every]
    assert names.count("eval.sample") == summary.n_samples
    chats = [s for s in every if s["name"] == "chat scripted"]
    assert len(chats) == summary.model_calls
    assert all(c["attributes"]["gen_ai.operation.name"] == "chat" for c in chats)
    assert all(c["attributes"]["gen_ai.request.model"] == "scripted" for c in chats)
    # the same trace, span for span, is in the local audit store
    import sqlite3

    conn = sqlite3.connect(db)
    stored = conn.execute("select count(*) from spans where trace_id = ?", [trace_id]).fetchone()
    conn.close()
    assert stored[0] == len(every)
