"""Property-based fuzz of ``labelgate serve`` (issue 20): whatever a client sends, the proxy
answers (no dropped connection), never with a 5xx for the client's mistake, every error is
``{"error": {"message", "type", "param", "code"}}``, every answer carries ``X-Request-Id``,
and every request has its record in the audit store.

Two generators, against a real server in a child process on loopback (the fake upstream in
this process), keyless and with API keys:

- hypothesis mutates a valid chat request: any JSON value at any field, fields removed, any
  text (control characters, other scripts, unknown label levels) in ``user``,
  ``metadata.session_id``, label levels and text parts, and any text in the
  ``X-Labelgate-Agent`` / ``X-Labelgate-Session`` / ``traceparent`` headers;
- schemathesis generates requests for every operation of ``/openapi.json``, positive (valid
  per the schema) and negative (invalid).

Bounded: ``MAX_EXAMPLES`` per generator and configuration, a deadline per example; under a
minute in all on the CI machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from fuzz_support import (
    Exchange,
    Header,
    ServeProcess,
    Tally,
    client_headers,
    exchange,
    mutated_request,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proxy_fixtures import *  # noqa: F403 - fixtures

from labelgate.guard.audit import AuditStore
from labelgate.proxy.auth import hash_key

pytestmark = pytest.mark.slow
MAX_EXAMPLES = 120
BOUNDED = settings(
    max_examples=MAX_EXAMPLES,
    deadline=timedelta(seconds=5),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
KEY = "sk-fuzz"
MODELS = ["fake-chat", "fake-tools"]


@pytest.fixture(params=["keyless", "keys"])
def served(request: pytest.FixtureRequest, fake_url: str, tmp_path: Path) -> Iterator[ServeProcess]:
    entries = [
        {"model_name": m, "litellm_params": {"model": f"openai/{m}", "api_base": fake_url}}
        for m in MODELS
    ]
    everything = {"requests_per_second": 100000, "burst": 100000}  # each refusal its own record
    config: dict[str, Any] = {
        "model_list": entries,
        "guard": {"state_dir": str(tmp_path / "state"), "refusal_records": everything},
    }
    if request.param == "keys":
        config["keys"] = [
            {"key_hash": hash_key(KEY), "agent_id": "fuzzer", "assertions": {"approve": True}}
        ]
    server = ServeProcess(config, tmp_path)
    yield server
    server.stop()


def _credential(server: ServeProcess) -> str:
    return server.approver_token() or KEY


def _mutations(server: ServeProcess, tally: Tally) -> None:
    auth: list[Header] = [("authorization", f"Bearer {_credential(server)}".encode())]

    @BOUNDED
    @given(body=mutated_request(), headers=client_headers())
    def one(body: dict[str, Any], headers: list[Header]) -> None:
        raw = json.dumps(body).encode()
        sent = [("content-type", b"application/json"), *auth, *headers]
        answer = exchange(server.port, "POST", "/v1/chat/completions", sent, raw)
        problems = tally.see(answer, raw.decode())
        assert not problems, (problems, body, headers)

    one()


def _schema_cases(server: ServeProcess, tally: Tally) -> None:
    auth = {"authorization": f"Bearer {_credential(server)}"}
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", headers=auth)
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    cases = st.one_of([schema.as_strategy(generation_mode=mode) for mode in modes])

    @BOUNDED
    @given(case=cases)
    def one(case: schemathesis.Case) -> None:
        what = f"{case.method} {case.formatted_path} {case.body!r}"
        try:
            response = case.call(base_url=server.url, headers=auth, timeout=30)
        except requests.ConnectionError:
            answer = Exchange(None)
        else:
            headers = {k: v[0] for k, v in response.headers.items()}
            answer = Exchange(response.status_code, headers, response.content)
        problems = tally.see(answer, what, case.operation.path)
        assert not problems, (problems, what)

    one()


def test_fuzz(served: ServeProcess) -> None:
    mutations, schema = Tally(), Tally()
    _mutations(served, mutations)
    _schema_cases(served, schema)
    served.stop()  # as Ctrl-C: the audit writer flushes and closes
    with AuditStore(served.audit_path, readonly=True) as store:
        for tally in (mutations, schema):
            assert tally.ids and not tally.unrecorded(store), tally.summary()
    # What the run covered: answers and refusals, not only one kind.
    assert mutations.statuses[200] and mutations.statuses[400]
    assert schema.statuses[200] and any(400 <= s < 500 for s in schema.statuses)
