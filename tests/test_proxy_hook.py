"""The guard seam: held tool calls, denials, label headers and events, failing closed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from proxy_fixtures import *  # noqa: F403 - fixtures
from proxy_fixtures import passthrough_config, sdk

from labelgate.proxy.auth import hash_key
from labelgate.proxy.context import RequestContext
from labelgate.proxy.hook import GuardedResponse, PassThroughHook, PolicyDenied
from labelgate.proxy.schemas import ChatCompletionRequest

HELLO = [{"role": "user", "content": "hello"}]
SEND = {"type": "function", "function": {"name": "send_email", "parameters": {"type": "object"}}}
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object"}},
}
NOTICE = "[labelgate] denied tool call send_email: untrusted data may not send mail."
LABEL = {"confidentiality": "internal", "integrity": "untrusted"}


class DenySendHook(PassThroughHook):
    """Removes every ``send_*`` tool call and says so in the content."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def before_call(
        self, ctx: RequestContext, request: ChatCompletionRequest
    ) -> ChatCompletionRequest:
        return request

    async def after_call(
        self, ctx: RequestContext, request: ChatCompletionRequest, response: dict[str, Any]
    ) -> GuardedResponse:
        self.seen.append(json.loads(json.dumps(response)))
        decisions = []
        for choice in response["choices"]:
            message = choice["message"]
            calls = message.get("tool_calls") or []
            kept = [c for c in calls if not c["function"]["name"].startswith("send_")]
            if len(kept) < len(calls):
                decisions.append({"action": "deny", "sink": "send_email"})
                message["content"] = (message.get("content") or "") + NOTICE
                message["tool_calls"] = kept or None
                choice["finish_reason"] = "tool_calls" if kept else "stop"
        return GuardedResponse(response=response, label=LABEL, decisions=decisions)


def _collect(stream: Any) -> tuple[str, list[Any], list[Any]]:
    text, calls, chunks = "", [], []
    for chunk in stream:
        chunks.append(chunk)
        for choice in chunk.choices:
            text += choice.delta.content or ""
            calls.extend(choice.delta.tool_calls or [])
    return text, calls, chunks


def test_denied_tool_call_is_replaced_by_a_message(
    start_proxy: Callable[..., str], fake_url: str
) -> None:
    url = start_proxy(passthrough_config(fake_url), hook=DenySendHook())
    raw = sdk(url).chat.completions.with_raw_response.create(
        model="fake-parallel", messages=HELLO, tools=[WEATHER, SEND]
    )
    answer = raw.parse()
    message = answer.choices[0].message
    assert [c.function.name for c in message.tool_calls or []] == ["get_weather"]
    assert message.content == NOTICE
    assert json.loads(raw.headers["x-labelgate-label"]) == LABEL
    assert json.loads(raw.headers["x-labelgate-decisions"])[0]["action"] == "deny"


def test_denied_streamed_tool_call_is_never_sent(
    start_proxy: Callable[..., str], fake_url: str
) -> None:
    hook = DenySendHook()
    url = start_proxy(passthrough_config(fake_url), hook=hook)
    stream = sdk(url).chat.completions.create(
        model="fake-tools", messages=HELLO, tools=[SEND], stream=True
    )
    text, calls, chunks = _collect(stream)
    assert calls == []
    assert text == "Let me check. " + NOTICE
    final = chunks[-1]
    assert final.choices[0].finish_reason == "stop"
    assert final.model_extra["labelgate"]["label"] == LABEL
    assert final.model_extra["labelgate"]["decisions"] == [{"action": "deny", "sink": "send_email"}]
    # The guard saw the whole call, assembled from its pieces.
    (seen,) = hook.seen
    (call,) = seen["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "send_email"
    assert json.loads(call["function"]["arguments"])["to"] == "bob@example.com"


def test_allowed_streamed_calls_survive_the_guard(
    start_proxy: Callable[..., str], fake_url: str
) -> None:
    url = start_proxy(passthrough_config(fake_url), hook=DenySendHook())
    stream = sdk(url).chat.completions.create(
        model="fake-parallel", messages=HELLO, tools=[WEATHER, SEND], stream=True
    )
    text, calls, chunks = _collect(stream)
    assert [c.function.name for c in calls] == ["get_weather"]
    assert text.endswith(NOTICE)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


class Exploding(PassThroughHook):
    def __init__(self, where: str) -> None:
        self.where = where

    async def before_call(
        self, ctx: RequestContext, request: ChatCompletionRequest
    ) -> ChatCompletionRequest:
        if self.where == "before":
            raise RuntimeError("boom")
        if self.where == "deny":
            raise PolicyDenied("agent planner may not use this model", [{"action": "deny"}])
        return request

    async def after_call(
        self, ctx: RequestContext, request: ChatCompletionRequest, response: dict[str, Any]
    ) -> GuardedResponse:
        if self.where == "after":
            raise RuntimeError("boom")
        if self.where == "rewrite":  # tries to redact text that was already streamed
            response["choices"][0]["message"]["content"] = "[redacted]"
        return GuardedResponse(response=response)


@pytest.mark.parametrize("where", ["before", "after"])
def test_hook_exception_fails_closed(
    start_proxy: Callable[..., str], fake_url: str, where: str
) -> None:
    url = start_proxy(passthrough_config(fake_url), hook=Exploding(where))
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(url).chat.completions.create(model="fake-tools", messages=HELLO, tools=[SEND])
    assert caught.value.body["type"] == "guard_error"  # type: ignore[index]


@pytest.mark.parametrize("where", ["after", "rewrite"])
def test_streamed_hook_failure_fails_closed(
    start_proxy: Callable[..., str], fake_url: str, where: str
) -> None:
    url = start_proxy(passthrough_config(fake_url), hook=Exploding(where))
    stream = sdk(url).chat.completions.create(
        model="fake-tools", messages=HELLO, tools=[SEND], stream=True
    )
    calls: list[Any] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            for choice in chunk.choices:
                calls.extend(choice.delta.tool_calls or [])
    assert calls == []
    assert caught.value.body["type"] == "guard_error"  # type: ignore[index]


def test_policy_denied_request_is_403(start_proxy: Callable[..., str], fake_url: str) -> None:
    url = start_proxy(passthrough_config(fake_url), hook=Exploding("deny"))
    with pytest.raises(openai.PermissionDeniedError) as caught:
        sdk(url).chat.completions.create(model="fake-chat", messages=HELLO)
    assert caught.value.body["type"] == "policy_denied"  # type: ignore[index]
    assert "x-labelgate-decisions" in caught.value.response.headers


class Recording(PassThroughHook):
    def __init__(self) -> None:
        self.contexts: list[RequestContext] = []

    async def before_call(
        self, ctx: RequestContext, request: ChatCompletionRequest
    ) -> ChatCompletionRequest:
        self.contexts.append(ctx)
        return request

    async def after_call(
        self, ctx: RequestContext, request: ChatCompletionRequest, response: dict[str, Any]
    ) -> GuardedResponse:
        return GuardedResponse(response=response)


def test_context_carries_caller_session_and_extension(
    start_proxy: Callable[..., str], fake_url: str
) -> None:
    hook = Recording()
    keys = [
        {
            "key_hash": hash_key("sk-p"),
            "agent_id": "planner",
            "may_raise": True,
            "assertions": {"approve": True},
        }
    ]
    url = start_proxy(passthrough_config(fake_url, keys=keys), hook=hook)
    client = sdk(url, key="sk-p")
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    raw = client.chat.completions.with_raw_response.create(
        model="fake-chat",
        messages=HELLO,
        extra_headers={"traceparent": trace},
        extra_body={"labelgate": {"labels": {"0": "pii"}}},
    )
    client.chat.completions.create(model="fake-chat", messages=HELLO, user="alice")
    client.chat.completions.create(
        model="fake-chat",
        messages=HELLO,
        user="alice",
        extra_headers={"X-Labelgate-Session": "s-42"},
    )
    first, by_user, by_header = hook.contexts
    assert first.caller.agent_id == "planner" and first.caller.may_raise
    assert first.caller.assertions == {"approve": True}
    assert first.session_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert first.session_source == "traceparent"
    assert raw.headers["x-labelgate-session"] == first.session_id
    assert first.labelgate == {"labels": {"0": "pii"}}
    assert (by_user.session_id, by_user.session_source) == ("user:alice", "user")
    assert (by_header.session_id, by_header.session_source) == ("s-42", "header")


def test_agent_header_names_the_caller_without_keys(
    start_proxy: Callable[..., str], fake_url: str
) -> None:
    hook = Recording()
    url = start_proxy(passthrough_config(fake_url), hook=hook)
    body = {"model": "fake-chat", "messages": HELLO, "metadata": {"session_id": "m-1"}}
    assert (
        httpx.post(
            f"{url}/chat/completions", json=body, headers={"x-labelgate-agent": "scout"}
        ).status_code
        == 200
    )
    (ctx,) = hook.contexts
    assert ctx.caller.agent_id == "scout" and not ctx.caller.authenticated
    assert (ctx.session_id, ctx.session_source) == ("m-1", "metadata")


# --------------------------------------------------------------------------- pending work


def _ctx() -> RequestContext:
    from labelgate.proxy.context import Caller

    return RequestContext("r1", Caller("a"), "s1", "generated", "chat.completions")


class PendingHook(PassThroughHook):
    """A hook that leaves work for while the upstream call is out."""

    def __init__(self, work: Callable[[], None]) -> None:
        self.work = work

    def pending(self, ctx: RequestContext) -> Callable[[], None]:
        return self.work


async def test_pending_work_runs_after_the_request_is_sent_and_before_the_answer() -> None:
    import asyncio

    from labelgate.proxy.app import _during

    events: list[str] = []

    async def call() -> str:
        events.append("sent")
        await asyncio.sleep(0.01)
        events.append("answered")
        return "answer"

    hook = PendingHook(lambda: events.append("labeled"))
    assert await _during(hook, _ctx(), call()) == "answer"  # type: ignore[arg-type]
    assert events == ["sent", "labeled", "answered"]


class LaterHook(PassThroughHook):
    """A hook whose pending work leaves something to await once the upstream has answered
    (as the label guard does for inputs that could relay an answer still being stored)."""

    def __init__(self, later: Callable[[], Any]) -> None:
        self.later = later

    def pending(self, ctx: RequestContext) -> Callable[[], Callable[[], Any]]:  # type: ignore[override]
        return lambda: self.later


def _broken_now() -> None:
    raise OSError("fingerprint store is gone")


async def _broken_later() -> None:
    raise OSError("an earlier answer could not be stored")


@pytest.mark.parametrize(
    "hook",
    [PendingHook(_broken_now), LaterHook(_broken_later)],
    ids=["while-the-call-is-out", "left-for-after-the-answer"],
)
async def test_failed_pending_work_fails_closed_and_discards_what_came(hook: object) -> None:
    from labelgate.proxy.app import _during
    from labelgate.proxy.errors import ProxyError

    discarded: list[str] = []

    async def call() -> str:
        return "opened stream"

    async def discard(result: str) -> None:
        discarded.append(result)

    with pytest.raises(ProxyError) as caught:
        await _during(hook, _ctx(), call(), discard)  # type: ignore[arg-type]
    assert (caught.value.status, caught.value.type) == (500, "guard_error")
    assert discarded == ["opened stream"]


async def test_work_left_for_later_runs_after_the_answer_and_before_it_is_returned() -> None:
    import asyncio

    from labelgate.proxy.app import _during

    events: list[str] = []

    async def call() -> str:
        await asyncio.sleep(0.01)
        events.append("answered")
        return "answer"

    async def later() -> None:
        events.append("labeled")

    assert await _during(LaterHook(later), _ctx(), call()) == "answer"  # type: ignore[arg-type]
    assert events == ["answered", "labeled"]


async def test_a_client_leaving_while_work_waits_closes_what_came() -> None:
    """Cancelled (the client left) while the work left for later waits (for an answer still
    being stored): the opened stream is closed, and the cancel goes on."""
    import asyncio

    from labelgate.proxy.app import _during

    discarded: list[str] = []
    waiting = asyncio.Event()

    async def call() -> str:
        return "opened stream"

    async def discard(result: str) -> None:
        discarded.append(result)

    async def later() -> None:
        waiting.set()
        await asyncio.sleep(60)

    task = asyncio.ensure_future(_during(LaterHook(later), _ctx(), call(), discard))  # type: ignore[arg-type]
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert discarded == ["opened stream"]
