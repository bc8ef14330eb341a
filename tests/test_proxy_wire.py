"""The proxy speaks OpenAI: the official SDK works unmodified, on both upstream paths.

Every test runs against the pass-through path (httpx) and the litellm path, with the same
fake upstream; the litellm runs are marked slow (importing litellm takes seconds).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from fakes.upstream import ARGUMENTS, FakeUpstream
from proxy_fixtures import *  # noqa: F403 - fixtures
from proxy_fixtures import ServerThread, async_sdk, passthrough_config, sdk, serve_proxy

SEND = {"type": "function", "function": {"name": "send_email", "parameters": {"type": "object"}}}
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object"}},
}
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(
    scope="module",
    params=["passthrough", pytest.param("litellm", marks=pytest.mark.slow)],
)
def proxy(request: pytest.FixtureRequest, fake_url: str) -> Iterator[tuple[str, str]]:
    """(base url, path) of a proxy in front of every fake mode."""
    config = passthrough_config(fake_url, passthrough=request.param == "passthrough", timeout=5)
    server: ServerThread = serve_proxy(config)
    yield f"{server.url}/v1", request.param
    server.stop()


def test_chat_is_forwarded_without_the_extension_field(
    proxy: tuple[str, str], fake: FakeUpstream
) -> None:
    url, _ = proxy
    answer = sdk(url).chat.completions.create(
        model="fake-chat", messages=HELLO, temperature=0.2, extra_body={"labelgate": {"x": 1}}
    )
    assert answer.choices[0].message.content == "echo: hello"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.total_tokens == 12
    sent = fake.last("fake-chat")
    assert "labelgate" not in sent.body
    assert sent.body["temperature"] == 0.2
    assert sent.headers["authorization"] == "Bearer sk-upstream"


@pytest.mark.parametrize(
    "path",
    [
        "passthrough",
        pytest.param(
            "litellm",
            marks=[
                pytest.mark.slow,
                pytest.mark.xfail(
                    strict=True,
                    reason="known: litellm's own HTTP clients keep an upstream's cookies "
                    "across callers (docs/proxy.md, Upstreams)",
                ),
            ],
        ),
    ],
)
def test_upstream_cookies_are_not_replayed(path: str, fake_url: str, fake: FakeUpstream) -> None:
    """The proxy serves many callers over one client: a cookie an upstream sets for one
    caller must not go back on anyone's later request, nor reach the caller. (By host name:
    cookie jars ignore cookies from IP addresses.)"""
    by_name = fake_url.replace("127.0.0.1", "localhost")
    server = serve_proxy(passthrough_config(by_name, passthrough=path == "passthrough"))
    try:
        for _ in range(2):
            raw = sdk(f"{server.url}/v1").chat.completions.with_raw_response.create(
                model="fake-cookie", messages=HELLO
            )
            assert "set-cookie" not in raw.headers
    finally:
        server.stop()
    assert "cookie" not in fake.last("fake-cookie").headers


async def test_async_chat(proxy: tuple[str, str]) -> None:
    url, _ = proxy
    client = async_sdk(url)
    answer = await client.chat.completions.create(model="fake-chat", messages=HELLO)
    assert answer.choices[0].message.content == "echo: hello"
    await client.close()


def test_streamed_text_arrives_in_pieces_with_a_final_label_chunk(proxy: tuple[str, str]) -> None:
    url, _ = proxy
    chunks = list(sdk(url).chat.completions.create(model="fake-chat", messages=HELLO, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 3
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in final] == ["stop"]
    extension = final[0].model_extra["labelgate"]
    assert set(extension) >= {"label", "decisions", "session_id", "request_id"}


def test_stream_usage_comes_last(proxy: tuple[str, str]) -> None:
    url, _ = proxy
    chunks = list(
        sdk(url).chat.completions.create(
            model="fake-chat", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 12


def test_tool_call(proxy: tuple[str, str]) -> None:
    url, _ = proxy
    answer = sdk(url).chat.completions.create(model="fake-tools", messages=HELLO, tools=[SEND])
    (call,) = answer.choices[0].message.tool_calls or []
    assert call.function.name == "send_email"
    assert json.loads(call.function.arguments) == json.loads(ARGUMENTS)
    assert answer.choices[0].finish_reason == "tool_calls"


async def test_parallel_tool_calls_streamed_whole(proxy: tuple[str, str]) -> None:
    url, _ = proxy
    client = async_sdk(url)
    stream = await client.chat.completions.create(
        model="fake-parallel", messages=HELLO, tools=[WEATHER, SEND], stream=True
    )
    deltas = []
    text = ""
    async for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            deltas.extend(choice.delta.tool_calls or [])
    await client.close()
    assert text == "Let me check. "
    # Held, then sent whole: one delta per call, complete arguments.
    assert [(d.index, d.function.name) for d in deltas] == [(0, "get_weather"), (1, "send_email")]
    assert all(json.loads(d.function.arguments) == json.loads(ARGUMENTS) for d in deltas)
    assert all(d.id for d in deltas)


def test_response_format_passes_through(proxy: tuple[str, str], fake: FakeUpstream) -> None:
    url, _ = proxy
    answer = sdk(url).chat.completions.create(
        model="fake-chat", messages=HELLO, response_format={"type": "json_object"}
    )
    assert json.loads(answer.choices[0].message.content or "") == {"echo": "hello"}
    assert fake.last("fake-chat").body["response_format"] == {"type": "json_object"}


def test_embeddings(proxy: tuple[str, str], fake: FakeUpstream) -> None:
    url, _ = proxy
    result = sdk(url).embeddings.create(model="fake-chat", input=["a", "bcd"])
    assert [d.embedding[0] for d in result.data] == [1.0, 3.0]
    assert fake.last("fake-chat").path == "/v1/embeddings"


def test_models_list(proxy: tuple[str, str]) -> None:
    url, _ = proxy
    ids = [m.id for m in sdk(url).models.list()]
    assert "fake-chat" in ids and "fake-parallel" in ids


def test_upstream_500_is_502(proxy: tuple[str, str]) -> None:
    url, _ = proxy
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(url).chat.completions.create(model="fake-500", messages=HELLO)
    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "upstream_error"  # type: ignore[index]


def test_upstream_garbage_is_502(proxy: tuple[str, str]) -> None:
    url, _ = proxy
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(url).chat.completions.create(model="fake-garbage", messages=HELLO)
    assert caught.value.status_code == 502


def test_health_and_readiness(proxy: tuple[str, str]) -> None:
    base = proxy[0].removesuffix("/v1")
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 200 and "fake-chat" in ready.json()["models"]
