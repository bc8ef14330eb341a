"""Added latency of the proxy: the same requests straight to a fake upstream, through
labelgate with the guard off (pass-through path, AllowAllHook) and with the guard on
(``build_app``: default policy, fingerprints, audit writer, sqlite tracing), side by side.

The fake upstream and the proxy each run in their own process (uvicorn), so the client's and
servers' GILs do not interfere. Run: ``python tests/bench/bench_proxy.py [N]``.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
BODY = {"model": "fake-chat", "messages": [{"role": "user", "content": "hello " * 50}]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spawn(code: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT)


def _wait(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _timings(client: httpx.Client, url: str, n: int, stream: bool) -> list[float]:
    body = {**BODY, "stream": stream}
    out = []
    for _ in range(n):
        start = time.perf_counter()
        resp = client.post(url, json=body)
        resp.read()
        assert resp.status_code == 200, resp.text
        out.append(time.perf_counter() - start)
    return out


def main(n: int = 500) -> None:
    fake_port, proxy_port, guard_port = _free_port(), _free_port(), _free_port()
    state = tempfile.mkdtemp(prefix="labelgate-bench-")
    config = {
        "model_list": [
            {
                "model_name": "fake-chat",
                "litellm_params": {
                    "model": "openai/fake-chat",
                    "api_base": f"http://127.0.0.1:{fake_port}/v1",
                    "timeout": 10,
                },
            }
        ]
    }
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        json.dump(config, f)  # JSON is YAML
    fake = _spawn(
        "import uvicorn; from fakes.upstream import FakeUpstream; "
        f"uvicorn.run(FakeUpstream().app(), port={fake_port}, log_level='error')"
    )
    proxy = _spawn(
        "import uvicorn; from proxy.app import create_app; from proxy.config import load_config; "
        f"uvicorn.run(create_app(load_config({f.name!r})), port={proxy_port}, "
        "log_level='error', access_log=False)"
    )
    guarded = _spawn(
        "import uvicorn; from proxy.assemble import build_app; from proxy.config import "
        f"load_config; c = load_config({f.name!r}); c.guard.state_dir = __import__('pathlib')"
        f".Path({state!r}); uvicorn.run(build_app(c), port={guard_port}, "
        "log_level='error', access_log=False)"
    )
    try:
        _wait(f"http://127.0.0.1:{fake_port}/v1/embeddings")
        _wait(f"http://127.0.0.1:{proxy_port}/readyz")
        _wait(f"http://127.0.0.1:{guard_port}/readyz")
        urls = {
            "direct": f"http://127.0.0.1:{fake_port}/v1/chat/completions",
            "guard off": f"http://127.0.0.1:{proxy_port}/v1/chat/completions",
            "guard on": f"http://127.0.0.1:{guard_port}/v1/chat/completions",
        }
        with httpx.Client() as client:
            for stream in (False, True):
                runs: dict[str, list[float]] = {name: [] for name in urls}
                for url in urls.values():
                    _timings(client, url, 20, stream)  # warm every path
                for _ in range(5):  # interleave, so drift hits all alike
                    for name, url in urls.items():
                        runs[name] += _timings(client, url, n // 5, stream)
                _report("stream" if stream else "non-stream", runs)
    finally:
        for proc in (guarded, proxy, fake):
            proc.terminate()
            proc.wait()
        os.unlink(f.name)


def _ms(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100)[int(q) - 1] * 1000 if q < 100 else max(xs) * 1000


def _report(name: str, runs: dict[str, list[float]]) -> None:
    base = statistics.median(runs["direct"]) * 1000
    parts = []
    for label, xs in runs.items():
        p50 = statistics.median(xs) * 1000
        added = "" if label == "direct" else f", +{p50 - base:.2f} ms"
        parts.append(f"{label} p50 {p50:.2f} ms p95 {_ms(xs, 95):.2f} ms{added}")
    print(f"{name:>10}: n={len(runs['direct'])}  " + " | ".join(parts))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
