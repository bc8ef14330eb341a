"""Added latency of the proxy: the same requests straight to a fake upstream and through
labelgate (pass-through path, AllowAllHook), side by side in one run.

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
    fake_port, proxy_port = _free_port(), _free_port()
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
    try:
        _wait(f"http://127.0.0.1:{fake_port}/v1/embeddings")
        _wait(f"http://127.0.0.1:{proxy_port}/readyz")
        direct = f"http://127.0.0.1:{fake_port}/v1/chat/completions"
        via = f"http://127.0.0.1:{proxy_port}/v1/chat/completions"
        with httpx.Client() as client:
            for stream in (False, True):
                _timings(client, direct, 20, stream)  # warm both paths
                _timings(client, via, 20, stream)
                a, b = [], []
                for _ in range(5):  # interleave, so drift hits both alike
                    a += _timings(client, direct, n // 5, stream)
                    b += _timings(client, via, n // 5, stream)
                _report("stream" if stream else "non-stream", a, b)
    finally:
        for proc in (proxy, fake):
            proc.terminate()
            proc.wait()
        os.unlink(f.name)


def _ms(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100)[int(q) - 1] * 1000 if q < 100 else max(xs) * 1000


def _report(name: str, direct: list[float], via: list[float]) -> None:
    d50, v50 = statistics.median(direct) * 1000, statistics.median(via) * 1000
    print(
        f"{name:>10}: n={len(direct)}  direct p50 {d50:.2f} ms p95 {_ms(direct, 95):.2f} ms | "
        f"via proxy p50 {v50:.2f} ms p95 {_ms(via, 95):.2f} ms | added p50 {v50 - d50:.2f} ms "
        f"(x{v50 / d50:.2f})"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
