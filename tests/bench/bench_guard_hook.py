"""The label guard's own cost per non-streamed request, in process, without the network.

Builds the guard exactly as ``labelgate serve`` does (``build_runtime``: default policy, SQLite
fingerprints, audit writer, sqlite span exporter) and runs ``before_call``, ``after_call`` and
``finish`` of ``PolicyHook`` on the bench's request (a 300-character prompt echoed back),
so the figure is the guard's CPU alone: no HTTP, no upstream, no event-loop I/O (the audit
store's child process included, and the writer flushed before the clock stops).

Run: ``python tests/bench/bench_guard_hook.py [--n 3000]``. To compare with another checkout
(e.g. ``git archive HEAD | tar -x -C /tmp/base``): ``python tests/bench/bench_guard_hook.py
--root /tmp/base``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench_proxy import cpu_seconds  # this process, its threads and children
from labelgate_tree import import_path

PROMPT = "hello " * 50


def _answer() -> dict[str, Any]:
    message = {"role": "assistant", "content": PROMPT}
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "model": "fake-chat",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 50, "total_tokens": 100},
    }


async def run(n: int) -> tuple[float, float]:
    """(wall ms, CPU ms of all threads) per request, after a warm-up."""
    from labelgate.proxy.app import ProxyState
    from labelgate.proxy.assemble import build_runtime
    from labelgate.proxy.config import ProxyConfig
    from labelgate.proxy.context import Caller, RequestContext
    from labelgate.proxy.hook import Outcome
    from labelgate.proxy.schemas import ChatCompletionRequest

    params = {"model": "openai/fake-chat", "api_base": "http://127.0.0.1:9/v1", "api_key": "x"}
    config = ProxyConfig.model_validate(
        {
            "model_list": [{"model_name": "fake-chat", "litellm_params": params}],
            "guard": {"state_dir": tempfile.mkdtemp(prefix="lg-hook-")},
        }
    )
    runtime = build_runtime(config, ProxyState(config, None, {}))
    hook, answer = runtime.hook, _answer()
    body = {"model": "fake-chat", "messages": [{"role": "user", "content": PROMPT}]}

    async def one() -> None:
        request = ChatCompletionRequest.model_validate(body)
        ctx = RequestContext(
            request_id=uuid.uuid4().hex,
            caller=Caller("anonymous"),
            session_id="bench",
            session_source="generated",
            endpoint="chat.completions",
            model="fake-chat",
        )
        request = await hook.before_call(ctx, request)
        guarded = await hook.after_call(ctx, request, answer)
        await hook.finish(ctx, Outcome("ok", request, guarded.response))

    for _ in range(200):
        await one()
    runtime.writer.flush()
    cpu, wall = cpu_seconds(os.getpid()), time.perf_counter()
    for _ in range(n):
        await one()
    runtime.writer.flush()  # the records' writing is part of the cost
    cpu, wall = cpu_seconds(os.getpid()) - cpu, time.perf_counter() - wall
    await runtime.close()
    return wall / n * 1000, cpu / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="requests (after 200 warm-up)")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    args = parser.parse_args()
    sys.path.insert(0, import_path(args.root))  # that tree as labelgate
    wall, cpu = asyncio.run(run(args.n))
    print(f"guard hook ({args.root}): {wall:.3f} ms wall/req, {cpu:.3f} ms CPU/req (all threads)")


if __name__ == "__main__":
    main()
