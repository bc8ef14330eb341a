"""Failures leave the proxy as OpenAI-style errors the SDK maps to the right exception."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import openai
import pytest
from fakes.upstream import FakeUpstream
from proxy_fixtures import *  # noqa: F403 - fixtures
from proxy_fixtures import async_sdk, passthrough_config, sdk

from labelgate.proxy.auth import hash_key

HELLO = [{"role": "user", "content": "hello"}]
JSON = {"content-type": "application/json"}  # keyless, a POST must say it is JSON
SEND = {"type": "function", "function": {"name": "send_email", "parameters": {"type": "object"}}}


def _error(exc: openai.APIStatusError) -> dict[str, object]:
    assert isinstance(exc.body, dict)
    return exc.body


def test_unknown_model_is_404(start_proxy: Callable[..., str], fake_url: str) -> None:
    url = start_proxy(passthrough_config(fake_url))
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(url).chat.completions.create(model="nope", messages=HELLO)
    assert _error(caught.value)["code"] == "model_not_found"


def test_malformed_json_and_invalid_fields_are_400(
    start_proxy: Callable[..., str], fake_url: str
) -> None:
    url = start_proxy(passthrough_config(fake_url))
    raw = httpx.post(f"{url}/chat/completions", content=b"{not json", headers=JSON)
    assert raw.status_code == 400
    assert raw.json()["error"]["code"] == "invalid_json"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(url).chat.completions.create(model="fake-chat", messages=[{"role": "robot"}])  # type: ignore[list-item]
    assert _error(caught.value)["param"] == "messages.0.role"
    missing = httpx.post(f"{url}/chat/completions", json={"model": "fake-chat"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "messages"


def test_unknown_route_and_method_are_openai_errors(
    start_proxy: Callable[..., str], fake_url: str
) -> None:
    url = start_proxy(passthrough_config(fake_url))
    assert httpx.get(f"{url}/nothing").json()["error"]["code"] == "not_found"
    wrong = httpx.get(f"{url}/chat/completions")
    assert wrong.status_code == 405 and "error" in wrong.json()


def test_keys_authenticate(start_proxy: Callable[..., str], fake_url: str) -> None:
    keys = [{"key_hash": hash_key("sk-good"), "agent_id": "planner"}]
    url = start_proxy(passthrough_config(fake_url, keys=keys))
    with pytest.raises(openai.AuthenticationError):
        sdk(url, key="sk-bad").chat.completions.create(model="fake-chat", messages=HELLO)
    assert httpx.post(f"{url}/chat/completions", json={}).status_code == 401
    assert httpx.get(f"{url}/models").status_code == 401
    answer = sdk(url, key="sk-good").chat.completions.create(model="fake-chat", messages=HELLO)
    assert answer.choices[0].message.content == "echo: hello"


def test_oversize_body_is_413(start_proxy: Callable[..., str], fake_url: str) -> None:
    url = start_proxy(passthrough_config(fake_url, server={"max_request_bytes": 2000}))
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(url).chat.completions.create(
            model="fake-chat", messages=[{"role": "user", "content": "x" * 5000}]
        )
    assert caught.value.status_code == 413
    assert _error(caught.value)["code"] == "request_too_large"
    # Chunked, with no Content-Length: counted while read.
    body = iter([b'{"model": "fake-chat", "messages": [', b" " * 3000, b"]}"])
    chunked = httpx.post(f"{url}/chat/completions", content=body, headers=JSON)
    assert chunked.status_code == 413
    # Chunked and within the limit: the pieces are joined.
    pieces = [b'{"model": "fake-chat", ', b'"messages": [{"role": "user", ', b'"content": "hi"}]}']
    joined = httpx.post(f"{url}/chat/completions", content=iter(pieces), headers=JSON)
    assert joined.status_code == 200
    assert joined.json()["choices"][0]["message"]["content"] == "echo: hi"


def test_rate_limit_is_429(start_proxy: Callable[..., str], fake_url: str) -> None:
    keys = [
        {
            "key_hash": hash_key("sk-a"),
            "agent_id": "a",
            "rate_limit": {"requests_per_second": 0.01, "burst": 2},
        }
    ]
    url = start_proxy(passthrough_config(fake_url, keys=keys))
    client = sdk(url, key="sk-a")
    for _ in range(2):
        client.chat.completions.create(model="fake-chat", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="fake-chat", messages=HELLO)
    assert caught.value.response.headers["retry-after"] == "100"


async def test_concurrency_limit_is_429(start_proxy: Callable[..., str], fake_url: str) -> None:
    keys = [{"key_hash": hash_key("sk-a"), "agent_id": "a", "max_concurrency": 1}]
    url = start_proxy(passthrough_config(fake_url, keys=keys, timeout=5))
    client = async_sdk(url, key="sk-a")
    slow = asyncio.create_task(client.chat.completions.create(model="fake-slow", messages=HELLO))
    await asyncio.sleep(0.3)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="fake-chat", messages=HELLO)
    assert _error(caught.value)["code"] == "concurrency_limit_exceeded"
    await slow
    # The slot is free again once the slow call is done.
    await client.chat.completions.create(model="fake-chat", messages=HELLO)
    await client.close()


def test_upstream_timeout_is_504(start_proxy: Callable[..., str], fake_url: str) -> None:
    url = start_proxy(passthrough_config(fake_url, timeout=0.2))
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(url).chat.completions.create(model="fake-slow", messages=HELLO)
    assert caught.value.status_code == 504
    assert _error(caught.value)["type"] == "upstream_timeout"
    with pytest.raises(openai.APIStatusError) as streamed:
        sdk(url).chat.completions.create(model="fake-slow", messages=HELLO, stream=True)
    assert streamed.value.status_code == 504


def test_retries(start_proxy: Callable[..., str], fake_url: str, fake: FakeUpstream) -> None:
    config = passthrough_config(fake_url, router_settings={"num_retries": 1, "retry_backoff": 0})
    url = start_proxy(config)
    before = fake.count("fake-flaky")
    answer = sdk(url).chat.completions.create(model="fake-flaky", messages=HELLO)
    assert answer.choices[0].message.content == "echo: hello"
    assert fake.count("fake-flaky") - before == 2


def test_no_retries_by_default(
    start_proxy: Callable[..., str], fake_url: str, fake: FakeUpstream
) -> None:
    url = start_proxy(passthrough_config(fake_url))
    before = fake.count("fake-500")
    with pytest.raises(openai.InternalServerError):
        sdk(url).chat.completions.create(model="fake-500", messages=HELLO)
    assert fake.count("fake-500") - before == 1


@pytest.mark.parametrize("stream", [False, True])
def test_fallbacks(
    start_proxy: Callable[..., str], fake_url: str, fake: FakeUpstream, stream: bool
) -> None:
    config = passthrough_config(fake_url)
    broken = {"model": "openai/fake-500", "api_base": fake_url, "timeout": 1}
    config["model_list"].append(
        {"model_name": "primary", "litellm_params": broken, "fallbacks": ["fake-chat"]}
    )
    url = start_proxy(config)
    before = fake.count("fake-500")
    answer = sdk(url).chat.completions.create(model="primary", messages=HELLO, stream=stream)
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in answer if c.choices)  # type: ignore[union-attr]
    else:
        text = answer.choices[0].message.content  # type: ignore[union-attr]
    assert text == "echo: hello"
    assert fake.count("fake-500") - before == 1


def test_router_settings_fallbacks(start_proxy: Callable[..., str], fake_url: str) -> None:
    url = start_proxy(
        passthrough_config(
            fake_url, router_settings={"fallbacks": [{"fake-garbage": ["fake-chat"]}]}
        )
    )
    answer = sdk(url).chat.completions.create(model="fake-garbage", messages=HELLO)
    assert answer.choices[0].message.content == "echo: hello"


def test_stream_garbage_before_first_chunk_is_502(
    start_proxy: Callable[..., str], fake_url: str
) -> None:
    url = start_proxy(passthrough_config(fake_url))
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(url).chat.completions.create(model="fake-garbage", messages=HELLO, stream=True)
    assert caught.value.status_code == 502


def test_dropped_stream_ends_with_an_error_and_no_half_tool_call(
    start_proxy: Callable[..., str], fake_url: str
) -> None:
    url = start_proxy(passthrough_config(fake_url))
    seen_calls = []
    text = ""
    stream = sdk(url).chat.completions.create(
        model="fake-drop", messages=HELLO, tools=[SEND], stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
                seen_calls.extend(choice.delta.tool_calls or [])
    assert text == "Let me check. "  # the text streamed before the drop got through
    assert seen_calls == []
    assert "upstream" in str(caught.value.message)


def test_stalled_stream_times_out(start_proxy: Callable[..., str], fake_url: str) -> None:
    url = start_proxy(passthrough_config(fake_url, timeout=0.3))
    stream = sdk(url).chat.completions.create(model="fake-stall", messages=HELLO, stream=True)
    with pytest.raises(openai.APIError, match="stalled"):
        for _ in stream:
            pass
