"""Issue 20's hardening, case by case: malformed input is a 400 naming its field (never a 5xx
or a dropped connection), header values are safe whatever the client sent, refusals carry
``X-Request-Id`` and a rate-bounded record, keyless mode keeps browsers out, approvals need an
approver, and ``/openapi.json`` describes the endpoints. (The property-based fuzz is in
tests/test_fuzz.py.)"""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import schemathesis
from click.testing import CliRunner
from fuzz_support import Exchange, exchange, openai_error
from proxy_fixtures import *  # noqa: F403 - fixtures
from proxy_fixtures import Guarded, passthrough_config, sdk

from labelgate.guard.audit import AuditStore
from labelgate.proxy.approvals import Pending
from labelgate.proxy.auth import hash_key
from labelgate.proxy.cli import approvals
from labelgate.proxy.header_values import header_text
from labelgate.proxy.refusals import SUMMARY_AGENT

StartGuarded = Callable[..., Guarded]
HI = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}
JSON = ("content-type", b"application/json")
KEYS = [
    {"key_hash": hash_key("sk-worker"), "agent_id": "worker"},
    {"key_hash": hash_key("sk-admin"), "agent_id": "ops", "assertions": {"approve": True}},
    {"key_hash": hash_key("sk-self"), "agent_id": "worker", "assertions": {"approve": True}},
]
DELETE = {"type": "function", "function": {"name": "delete_file", "parameters": {}}}


@pytest.fixture
def keyless(start_guarded: StartGuarded, fake_url: str) -> Guarded:
    return start_guarded(passthrough_config(fake_url), guard={"approvals_timeout": 5})


@pytest.fixture
def keyed(start_guarded: StartGuarded, fake_url: str) -> Guarded:
    return start_guarded(passthrough_config(fake_url, keys=KEYS), guard={"approvals_timeout": 5})


def _post(
    proxy: Guarded, body: Any, *headers: tuple[str, bytes], path: str = "/v1/chat/completions"
) -> Exchange:
    return exchange(proxy.server.port, "POST", path, [JSON, *headers], json.dumps(body).encode())


def _records(proxy: Guarded) -> AuditStore:
    proxy.stop()  # the shutdown flushes the writer
    return AuditStore(proxy.audit_path, readonly=True)


# --------------------------------------------------------------------------- malformed input


def test_malformed_parts_and_labels_are_400_naming_the_field(keyless: Guarded) -> None:
    bad_part = {**HI, "messages": [{"role": "user", "content": [{"type": "text", "text": 0}]}]}
    not_object = {**HI, "messages": [{"role": "user", "content": [7]}]}
    level = {**HI, "labelgate": {"messages": {"0": {"label": {"confidentiality": "cosmic"}}}}}
    doc = [{"text": "ledger", "label": {"confidentiality": "cosmic"}}]
    answers = {
        "messages.0.content.0.text": _post(keyless, bad_part),
        "messages.0.content.0": _post(keyless, not_object),
        "labelgate.messages.0.label": _post(keyless, level),
        "documents.0.label": _post(keyless, doc, path="/v1/labelgate/documents"),
    }
    for param, answer in answers.items():
        assert answer.status == 400 and openai_error(answer.body), answer
        assert json.loads(answer.body)["error"]["param"] == param
    store = _records(keyless)
    for answer in answers.values():
        row = store.get_request(answer.request_id)
        assert row is not None and row["status"] == "error"


@pytest.mark.parametrize(
    "where",
    [{"user": "ユーザー"}, {"user": "a\r\nx-evil: 1"}, {"metadata": {"session_id": "a\x00b\n"}}],
)
@pytest.mark.parametrize("stream", [False, True])
def test_any_session_text_is_answered_and_echoed_safely(
    keyless: Guarded, where: dict[str, Any], stream: bool
) -> None:
    answer = _post(keyless, {**HI, **where, "stream": stream})
    assert answer.status == 200
    echoed = answer.headers["x-labelgate-session"]
    assert echoed.isascii() and echoed.isprintable() and "x-evil" not in answer.headers
    # Sent back as it came, it names the same session.
    again = _post(keyless, HI, ("x-labelgate-session", echoed.encode()))
    store = _records(keyless)
    first, second = store.get_request(answer.request_id), store.get_request(again.request_id)
    assert first is not None and second is not None
    assert first["session_id"] == second["session_id"]
    assert header_text(first["session_id"]) == echoed


# --------------------------------------------------------------------------- refusals


def test_refusals_carry_a_request_id_and_a_record(keyed: Guarded) -> None:
    bad_key = _post(keyed, HI, ("authorization", b"Bearer sk-wrong"))
    no_key = exchange(keyed.server.port, "GET", "/v1/models", [])
    unknown = exchange(
        keyed.server.port, "GET", "/v1/nothing", [("authorization", b"Bearer sk-worker")]
    )
    for answer, status in ((bad_key, 401), (no_key, 401), (unknown, 404)):
        assert answer.status == status and openai_error(answer.body)
        assert answer.request_id
    store = _records(keyed)
    for answer in (bad_key, no_key, unknown):
        row = store.get_request(answer.request_id)
        assert row is not None and row["status"] == "error"
    assert store.get_request(no_key.request_id)["agent"] == "unauthenticated"  # type: ignore[index]
    assert store.get_request(unknown.request_id)["agent"] == "worker"  # type: ignore[index]


def test_a_flood_of_bad_keys_is_summarised(start_guarded: StartGuarded, fake_url: str) -> None:
    limit = {"requests_per_second": 0.001, "burst": 3}
    proxy = start_guarded(passthrough_config(fake_url, keys=KEYS), guard={"refusal_records": limit})
    answers = [_post(proxy, HI, ("authorization", b"Bearer sk-wrong")) for _ in range(40)]
    assert all(a.status == 401 and a.request_id for a in answers)
    store = _records(proxy)
    own = [a for a in answers if store.get_request(a.request_id) is not None]
    assert len(own) == 3
    (summary,) = store.db.execute(
        "select error from requests where agent = ?", [SUMMARY_AGENT]
    ).fetchall()
    assert summary[0].startswith("37 refused requests from 127.0.0.1 (401 invalid_api_key)")
    assert answers[3].request_id in summary[0] and answers[-1].request_id in summary[0]


# --------------------------------------------------------------------------- browsers


BROWSER_REFUSALS = [
    ([("host", b"evil.example:4000")], 403, "host_not_allowed"),
    ([("origin", b"http://evil.example")], 403, "cross_origin_request"),
    ([("origin", b"null")], 403, "cross_origin_request"),
    ([("sec-fetch-site", b"cross-site")], 403, "cross_origin_request"),
]


@pytest.mark.parametrize(
    "path",
    ["/v1/chat/completions", "/v1/embeddings", "/v1/labelgate/documents", "/chat/completions"],
)
def test_keyless_refuses_what_a_web_page_could_send(keyless: Guarded, path: str) -> None:
    port = keyless.server.port
    body = json.dumps(HI).encode()
    for headers, status, code in BROWSER_REFUSALS:
        answer = exchange(port, "POST", path, [JSON, *headers], body)
        assert answer.status == status and json.loads(answer.body)["error"]["code"] == code
        assert answer.request_id
    for media in (b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data"):
        answer = exchange(port, "POST", path, [("content-type", media)], body)
        assert answer.status == 415 and openai_error(answer.body) and answer.request_id
    fine = [("origin", b"http://localhost:3000"), ("sec-fetch-site", b"same-origin")]
    assert _post(keyless, HI, *fine).status == 200


def test_keyless_host_check_covers_every_path(keyless: Guarded) -> None:
    evil = [("host", b"evil.example")]
    for method, path in (("GET", "/v1/models"), ("GET", "/healthz"), ("GET", "/openapi.json")):
        answer = exchange(keyless.server.port, method, path, evil, b"")
        assert answer.status == 403 and answer.request_id
    assert httpx.get(f"http://localhost:{keyless.server.port}/healthz").status_code == 200


def test_with_keys_other_hosts_are_served(keyed: Guarded) -> None:
    headers = [JSON, ("host", b"llm.internal"), ("authorization", b"Bearer sk-worker")]
    answer = exchange(
        keyed.server.port, "POST", "/v1/chat/completions", headers, json.dumps(HI).encode()
    )
    assert answer.status == 200


# --------------------------------------------------------------------------- approvals


class _Watched(dict[str, Pending]):
    """The approvals' pending table, with an event set when an approval is added."""

    def __init__(self) -> None:
        super().__init__()
        self.added = threading.Event()

    def __setitem__(self, key: str, value: Pending) -> None:
        super().__setitem__(key, value)
        self.added.set()


@pytest.fixture
def watched() -> Callable[[Guarded], _Watched]:
    def watch(proxy: Guarded) -> _Watched:
        table = _Watched()
        proxy.runtime.hook.approvals._pending = table
        return table

    return watch


def _held(
    proxy: Guarded, pool: ThreadPoolExecutor, key: str, table: _Watched
) -> tuple[Future[Any], Pending]:
    held = pool.submit(
        lambda: sdk(proxy.url, key=key).chat.completions.create(
            model="fake-tools",
            messages=[{"role": "user", "content": "Clean up the old report."}],
            tools=[DELETE],
        )
    )
    assert table.added.wait(10)
    return held, next(iter(table.values()))


def test_keyless_approvals_need_the_token_file(
    keyless: Guarded, watched: Callable[[Guarded], _Watched]
) -> None:
    token_file = keyless.runtime.approver_token.path  # type: ignore[union-attr]
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    listing = f"{keyless.url}/labelgate/approvals"
    assert httpx.get(listing).status_code == 401
    assert httpx.get(listing, headers={"authorization": "Bearer guess"}).status_code == 401
    table = watched(keyless)
    runner = CliRunner()
    with ThreadPoolExecutor(1) as pool:
        held, item = _held(keyless, pool, "sk-any", table)
        answer = f"{listing}/{item.id}"
        assert httpx.post(answer, json={"approve": True}).status_code == 401  # the agent itself
        shown = httpx.get(listing, headers={"authorization": f"Bearer {token}"}).json()["data"]
        assert shown[0]["arguments"] == {"to": "bob@example.com", "body": "hello"}
        own = httpx.post(
            answer,
            json={"approve": True},
            headers={"authorization": f"Bearer {token}", "x-labelgate-agent": "anonymous"},
        )
        assert own.status_code == 403 and own.json()["error"]["code"] == "own_request"
        done = runner.invoke(
            approvals, ["approve", item.id, "--url", keyless.base, "--token-file", str(token_file)]
        )
        assert done.exit_code == 0, done.output
        assert held.result(timeout=10).choices[0].message.tool_calls


def test_with_keys_only_approvers_list_and_never_their_own(
    keyed: Guarded, watched: Callable[[Guarded], _Watched]
) -> None:
    listing = f"{keyed.url}/labelgate/approvals"
    worker = httpx.get(listing, headers={"authorization": "Bearer sk-worker"})
    assert worker.status_code == 403 and worker.json()["error"]["code"] == "not_an_approver"
    table = watched(keyed)
    with ThreadPoolExecutor(1) as pool:
        held, item = _held(keyed, pool, "sk-worker", table)
        answer = f"{listing}/{item.id}"
        own = httpx.post(
            answer, json={"approve": True}, headers={"authorization": "Bearer sk-self"}
        )
        assert own.status_code == 403 and own.json()["error"]["code"] == "own_request"
        ok = httpx.post(
            answer, json={"approve": False}, headers={"authorization": "Bearer sk-admin"}
        )
        assert ok.status_code == 200
        assert held.result(timeout=10).choices[0].message.tool_calls is None


# --------------------------------------------------------------------------- OpenAPI


def test_openapi_describes_the_endpoints_from_the_models(keyless: Guarded) -> None:
    response = httpx.get(f"{keyless.base}/openapi.json")
    assert response.status_code == 200 and response.headers["x-request-id"]
    spec = response.json()
    assert spec["openapi"] == "3.1.0"
    assert {"/v1/chat/completions", "/v1/embeddings", "/v1/models", "/healthz", "/readyz",
            "/v1/labelgate/documents", "/v1/labelgate/approvals",
            "/v1/labelgate/approvals/{approval_id}"} <= set(spec["paths"])  # fmt: skip
    schemas = spec["components"]["schemas"]
    assert "fake-chat" in schemas["ChatCompletionRequest"]["properties"]["model"]["enum"]
    labelgate = schemas["ChatCompletionRequest"]["properties"]["labelgate"]["anyOf"][0]
    assert labelgate == {"$ref": "#/components/schemas/Extension"}
    assert {"MessageAnnotation", "DocumentIn", "ApprovalAnswer", "ErrorBody"} <= set(schemas)
    loaded = schemathesis.openapi.from_dict(spec)
    assert len([op for op in loaded.get_all_operations() if op.ok()]) == 8


def test_openapi_without_the_guard(start_proxy: Callable[..., str], fake_url: str) -> None:
    url = start_proxy(passthrough_config(fake_url))
    paths = httpx.get(url.removesuffix("/v1") + "/openapi.json").json()["paths"]
    assert "/v1/chat/completions" in paths and "/v1/labelgate/documents" not in paths


def test_header_escapes_that_are_not_utf8_are_kept_as_sent(keyed: Guarded) -> None:
    headers = [("authorization", b"Bearer sk-worker"), ("x-labelgate-session", b"%DE%41x")]
    docs = [{"text": "a note"}]
    answer = _post(keyed, docs, *headers, path="/v1/labelgate/documents")
    assert answer.status == 200 and answer.headers["x-labelgate-session"] == "%25DE%2541x"
