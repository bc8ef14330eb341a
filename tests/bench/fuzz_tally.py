"""Count what malformed input does to a guarded proxy, without stopping at the first failure.

The same generators as the fuzz tests (tests/fuzz_support.py: mutated chat requests and
client headers; schemathesis, positive and negative, from the OpenAPI description), against
``build_app`` on loopback with the fake upstream, keyless and with API keys. Prints, per
configuration, the requests sent, 5xx answers, dropped connections, error bodies not
OpenAI-shaped, answers without ``X-Request-Id`` and requests without their audit record.
Run: ``python tests/bench/fuzz_tally.py [--n 300]`` (not collected by pytest).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes.upstream import FakeUpstream
from fuzz_support import (
    Exchange,
    ServeProcess,
    Tally,
    client_headers,
    exchange,
    mutated_request,
)

from labelgate.guard.audit import AuditStore
from labelgate.proxy.auth import hash_key
from labelgate.proxy.embedded import ServerThread
from labelgate.proxy.openapi import openapi_schema

MODELS = ["fake-chat", "fake-tools"]
_HI = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}
ISSUE_CASES = [
    {**_HI, "messages": [{"role": "user", "content": [{"type": "text", "text": 0}]}]},
    {**_HI, "user": "ユーザー"},
    {**_HI, "metadata": {"session_id": "セッション"}},
    {**_HI, "stream": True, "user": "ユーザー"},
    {**_HI, "labelgate": {"messages": {"0": {"label": {"confidentiality": "cosmic"}}}}},
    {**_HI, "user": "a\r\nx-evil: 1"},
    {**_HI, "user": "a\x00b"},
    {**_HI, "metadata": {"session_id": "a\nb"}},
]
KEY = "sk-fuzz"
DERANDOMIZE = True  # the same examples every run (--random: new ones)


def _config(fake_url: str, keys: bool, state: str) -> dict[str, Any]:
    entries = [
        {"model_name": m, "litellm_params": {"model": f"openai/{m}", "api_base": fake_url}}
        for m in MODELS
    ]
    config: dict[str, Any] = {"model_list": entries, "guard": {"state_dir": state}}
    if keys:
        config["keys"] = [{"key_hash": hash_key(KEY), "agent_id": "fuzzer"}]
    return config


def _mutations(port: int, auth: list[tuple[str, bytes]], tally: Tally, n: int) -> None:
    @settings(max_examples=n, deadline=None, database=None, derandomize=DERANDOMIZE,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(body=mutated_request(), headers=client_headers())
    def one(body: dict[str, Any], headers: list[tuple[str, bytes]]) -> None:
        raw = json.dumps(body).encode()
        sent = [("content-type", b"application/json"), *auth, *headers]
        tally.see(exchange(port, "POST", "/v1/chat/completions", sent, raw), raw.decode())

    one()
    for body in ISSUE_CASES:  # the cases issue 20 names, every run
        raw = json.dumps(body).encode()
        sent = [("content-type", b"application/json"), *auth]
        tally.see(exchange(port, "POST", "/v1/chat/completions", sent, raw), raw.decode())


def _schema_cases(base: str, auth: dict[str, str], tally: Tally, n: int, keys: bool) -> None:
    schema = schemathesis.openapi.from_dict(openapi_schema(MODELS, guard=True, keys=keys))
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    strategy = st.one_of([schema.as_strategy(generation_mode=mode) for mode in modes])

    @settings(max_examples=n, deadline=None, database=None, derandomize=DERANDOMIZE,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=strategy)
    def one(case: schemathesis.Case) -> None:
        try:
            response = case.call(base_url=base, headers=auth, timeout=30)
        except requests.ConnectionError:
            tally.see(Exchange(None), f"{case.method} {case.formatted_path}")
            return
        headers = {k: v[0] for k, v in response.headers.items()}
        answer = Exchange(response.status_code, headers, response.content)
        tally.see(answer, f"{case.method} {case.formatted_path} {case.body!r}", case.operation.path)

    one()


def run(fake_url: str, keys: bool, n: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="fuzz-tally-"))
    server = ServeProcess(_config(fake_url, keys, str(workdir / "state")), workdir)
    credential = server.approver_token() or KEY  # keyless: the approvers' token
    auth = [("authorization", f"Bearer {credential}".encode())]
    mutations, schema = Tally(), Tally()
    try:
        _mutations(server.port, auth, mutations, n)
        _schema_cases(server.url, {k: v.decode() for k, v in auth}, schema, n, keys)
    finally:
        server.stop()  # runs the shutdown: the audit writer flushes and closes
    errors = [line for line in server.lines if "Traceback" in line or "Error" in line]
    store = AuditStore(server.audit_path, readonly=True)
    summaries = store.db.execute(
        "select error from requests where agent = 'labelgate:refusals'"
    ).fetchall()
    out: dict[str, Any] = {"server_log_errors": errors[:5]}
    for name, tally in (("mutations", mutations), ("schemathesis", schema)):
        out[name] = {**tally.summary(len(tally.unrecorded(store))), "examples": tally.examples}
    out["refusals_in_summaries"] = sum(int(row[0].split()[0]) for row in summaries)
    store.close()
    out["audit_store_mb"] = round(Path(server.audit_path).stat().st_size / 1e6, 2)  # issue 20
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="examples per generator and config")
    parser.add_argument("--random", action="store_true", help="new examples every run")
    args = parser.parse_args()
    global DERANDOMIZE
    DERANDOMIZE = not args.random
    fake = FakeUpstream(keep=False)
    upstream = ServerThread(fake.app()).start()
    try:
        for keys in (False, True):
            result = run(f"{upstream.url}/v1", keys, args.n)
            print(json.dumps({"keys": keys, **result}, indent=1, ensure_ascii=False))
    finally:
        upstream.stop()


if __name__ == "__main__":
    main()
