"""Added latency and throughput of the proxy, side by side in one run, loopback only.

Targets, each its own process, all in front of the same fake upstream (``tests/fakes``):

- ``direct``: the fake upstream itself (uvicorn; uvloop + httptools when installed);
- ``guard off``: ``labelgate serve`` with ``guard: {enabled: false}`` (plain pass-through);
- ``guard on``: ``labelgate serve`` as shipped (default policy, SQLite fingerprints, audit
  writer, sqlite span exporter);
- ``forwarder``: the floor (``forwarder.py``): a raw ASGI hop under uvicorn with the
  proxy's HTTP client and nothing else, answering a stream once the upstream's first event
  has come, as the gateway does; sequential runs only;
- ``litellm``: LiteLLM's own proxy (``litellm --config``), when ``litellm[proxy]`` is
  installed (skipped with a message otherwise), with a master key, its local cost map and no
  telemetry.

Measured, interleaved in rounds so that drift on a shared machine hits every target alike:

1. sequential (one request at a time): median and p99 latency, non-streamed and streamed
   (time to the first content token, and to the end of the stream), first with the same
   prompt every time (every cache warm), then with a new prompt each time (real traffic: the
   guard fingerprints and stores each new answer, and looks up each new prompt);
2. concurrency 1/8/32 (closed loop, fixed time window): requests/s and p99, non-streamed and
   streamed, and the best throughput whose p99 stays under ``--p99-bound-ms``.

The order of the targets is reversed every other round, and each concurrency window is run in
two halves, one in each order: measured second, a target did about 10% better at c=8.

Run: ``python tests/bench/bench_proxy.py [--n 300] [--seconds 3] [--concurrency 1,8,32]
[--no-litellm] [--base OTHER_CHECKOUT]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from labelgate_tree import ROOT, import_path, module

PROMPT = "hello " * 50  # 300 characters: the streamed echo is ~77 chunks of 4 characters
_RANDOM = random.Random(7)
_WORDS = [
    "".join(_RANDOM.choices(string.ascii_lowercase, k=_RANDOM.randint(3, 9))) for _ in range(5000)
]
MASTER_KEY = "sk-bench-" + "0123456789abcdef" * 4  # LiteLLM refuses to start without one
_CONTENT = re.compile(rb'"content": ?"[^"]')  # a chunk carrying a token (not the empty role one)


@dataclass
class Target:
    name: str
    base: str  # http://127.0.0.1:PORT
    proc: subprocess.Popen[bytes]
    ready_path: str

    @property
    def url(self) -> str:
        return f"{self.base}/v1/chat/completions"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, its threads and its child processes (e.g. the
    audit store's writer), Linux only (0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(child) for child in _children(pid))


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


@dataclass
class Sample:
    total: list[float] = field(default_factory=list)  # seconds per request
    first: list[float] = field(default_factory=list)  # seconds to the first token (streams)
    errors: int = 0
    elapsed: float = 0.0  # wall time of a concurrency window
    cpu: float = 0.0  # the target's own CPU seconds (all threads) while measured

    def add(self, other: Sample) -> None:
        self.total += other.total
        self.first += other.first
        self.errors += other.errors
        self.elapsed += other.elapsed
        self.cpu += other.cpu


def _in_turn(targets: list[Target], k: int) -> list[Target]:
    """The targets in order, then in reverse: a target measured after another does better
    (by about 10% of throughput here), so each is first as often as last."""
    return targets if k % 2 == 0 else targets[::-1]


# --------------------------------------------------------------------------- processes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    # This tree as ``labelgate`` (labelgate_tree), and tests/ for the fake upstream.
    path = f"{import_path(ROOT)}:{ROOT / 'tests'}"
    full_env = {**os.environ, "PYTHONPATH": path, **(env or {})}
    with log.open("wb") as out:
        return subprocess.Popen(args, env=full_env, cwd=log.parent, stdout=out, stderr=out)


def _start_fake(work: Path) -> Target:
    port = _free_port()
    code = (
        "import uvicorn; from fakes.upstream import FakeUpstream; "
        f"uvicorn.run(FakeUpstream(keep=False).app(), host='127.0.0.1', port={port}, "
        "log_level='warning', access_log=False)"
    )
    proc = _spawn([sys.executable, "-c", code], work / "fake.log")
    return Target("direct", f"http://127.0.0.1:{port}", proc, "/v1/models")


def _model_list(fake: Target) -> list[dict[str, object]]:
    params = {"model": "openai/fake-chat", "api_base": f"{fake.base}/v1", "api_key": "sk-fake"}
    return [{"model_name": "fake-chat", "litellm_params": {**params, "timeout": 30}}]


def _start_labelgate(
    name: str, work: Path, fake: Target, guard: dict[str, object], root: Path = ROOT
) -> Target:
    port = _free_port()
    config = work / f"{name.replace(' ', '_')}.yaml"
    config.write_text(json.dumps({"model_list": _model_list(fake), "guard": guard}))  # JSON is YAML
    # Exactly ``labelgate serve`` (the click command), minus the access log.
    code = f"from {module(root, 'proxy.cli')} import serve; serve()"
    args = [sys.executable, "-c", code, "--config", str(config), "--port", str(port)]
    env = {"PYTHONPATH": f"{import_path(root)}:{root / 'tests'}"}  # this tree or ``--base``
    proc = _spawn([*args, "--log-level", "warning"], work / f"{config.stem}.log", env)
    return Target(name, f"http://127.0.0.1:{port}", proc, "/readyz")


def _start_forwarder(work: Path, fake: Target) -> Target:
    port = _free_port()
    script = str(Path(__file__).with_name("forwarder.py"))
    proc = _spawn([sys.executable, script, fake.base, str(port)], work / "forwarder.log")
    return Target("forwarder", f"http://127.0.0.1:{port}", proc, "/")


def _start_litellm(work: Path, fake: Target) -> Target | None:
    exe = shutil.which("litellm")
    try:
        import fastapi  # noqa: F401  (what litellm[proxy] brings)
    except ImportError:
        exe = None
    if exe is None:
        print("litellm: skipped (LiteLLM's proxy is not installed: pip install 'litellm[proxy]')")
        return None
    port = _free_port()
    config = work / "litellm.yaml"
    settings = {"telemetry": False}
    config.write_text(json.dumps({"model_list": _model_list(fake), "litellm_settings": settings}))
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the cost map at start
        "LITELLM_TELEMETRY": "False",
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "DISABLE_SCHEMA_UPDATE": "True",
    }
    args = [exe, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    proc = _spawn(args, work / "litellm.log", env)
    return Target("litellm", f"http://127.0.0.1:{port}", proc, "/health/readiness")


async def _wait(session: aiohttp.ClientSession, target: Target, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if target.proc.poll() is not None:
            return False
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            async with session.get(target.base + target.ready_path, headers=_headers()) as resp:
                if resp.status == 200:
                    return True
        await asyncio.sleep(0.2)
    return False


def _stop(targets: list[Target]) -> None:
    for target in targets:
        if target.proc.poll() is None:
            target.proc.terminate()
    for target in targets:
        try:
            target.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            target.proc.kill()


# --------------------------------------------------------------------------- client


def _headers() -> dict[str, str]:
    return {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}


def _unique_prompt() -> str:
    """50 words drawn from 5,000 made-up ones: a prompt (and an echoed answer) never seen
    before, as with real traffic, so the guard fingerprints and stores every answer."""
    return " ".join(_RANDOM.choices(_WORDS, k=50))


def _body(stream: bool, unique: bool = False) -> bytes:
    messages = [{"role": "user", "content": _unique_prompt() if unique else PROMPT}]
    return json.dumps({"model": "fake-chat", "messages": messages, "stream": stream}).encode()


async def _one(
    session: aiohttp.ClientSession, url: str, stream: bool, out: Sample, unique: bool = False
) -> None:
    body = _body(stream, unique)
    start = time.perf_counter()
    first = None
    try:
        async with session.post(url, data=body, headers=_headers()) as resp:
            if not stream:
                data = await resp.read()
                ok = resp.status == 200 and b'"choices"' in data
            else:
                ok, done = resp.status == 200, False
                async for line in resp.content:
                    if first is None and _CONTENT.search(line):
                        first = time.perf_counter() - start
                    done = done or line.startswith(b"data: [DONE]")
                ok = ok and done and first is not None
    except (TimeoutError, aiohttp.ClientError):
        ok = False
    if not ok:
        out.errors += 1
        return
    out.total.append(time.perf_counter() - start)
    if first is not None:
        out.first.append(first)


async def sequential(
    session: aiohttp.ClientSession, url: str, n: int, stream: bool, unique: bool = False
) -> Sample:
    out = Sample()
    for _ in range(n):
        await _one(session, url, stream, out, unique)
    return out


async def closed_loop(
    session: aiohttp.ClientSession, url: str, concurrency: int, seconds: float, stream: bool
) -> Sample:
    """``concurrency`` clients, each sending its next request when the last one answered."""
    out = Sample()
    stop = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < stop:
            await _one(session, url, stream, out)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    out.elapsed = time.perf_counter() - start
    return out


# --------------------------------------------------------------------------- figures


def _q(xs: list[float], q: float) -> float:
    """The q-quantile in ms (nearest rank), NaN when empty."""
    if not xs:
        return float("nan")
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _p50(xs: list[float]) -> float:
    return statistics.median(xs) * 1000 if xs else float("nan")


def _sequential_table(title: str, runs: dict[str, Sample], stream: bool) -> None:
    base = runs["direct"]
    print(f"\n{title}: sequential, n={len(base.total)} per target")
    head = "target        p50 ms   p99 ms   added p50  added p99  CPU ms/req"
    print(head + ("   TTFT p50  TTFT p99  added TTFT p50" if stream else "") + "   errors")
    for name, s in runs.items():
        line = f"{name:<12} {_p50(s.total):7.2f}  {_q(s.total, 0.99):7.2f}"
        if name == "direct":
            line += " " * 22
        else:
            line += f"   {_p50(s.total) - _p50(base.total):+8.2f}"
            line += f"  {_q(s.total, 0.99) - _q(base.total, 0.99):+8.2f}"
        line += f"  {1000 * s.cpu / max(1, len(s.total)):9.2f}"
        if stream:
            line += f"   {_p50(s.first):8.2f}  {_q(s.first, 0.99):8.2f}"
            added = "" if name == "direct" else f"{_p50(s.first) - _p50(base.first):+8.2f}"
            line += f"  {added:>14}"
        print(line + f"   {s.errors}")
    _ratios(runs, lambda s, b: _p50(s.total) - _p50(b.total), "added p50")
    _over_floor(runs, lambda s: _p50(s.total), "added p50")
    if stream:
        _ratios(runs, lambda s, b: _p50(s.first) - _p50(b.first), "added TTFT p50")
        _over_floor(runs, lambda s: _p50(s.first), "added TTFT p50")


def _over_floor(runs: dict[str, Sample], p50: Callable[[Sample], float], what: str) -> None:
    """How much of the added latency is the hop itself (the forwarder's), how much ours."""
    if "forwarder" not in runs:
        return
    floor = p50(runs["forwarder"]) - p50(runs["direct"])
    for name in ("guard off", "guard on"):
        ours = p50(runs[name]) - p50(runs["direct"])
        print(f"  {what}: {name} = forwarder {floor:+.2f} + {ours - floor:+.2f} ms")


def _ratios(runs: dict[str, Sample], added: object, what: str) -> None:
    if "litellm" not in runs:
        return
    fn = added  # (sample, base) -> ms
    base = runs["direct"]
    theirs = fn(runs["litellm"], base)  # type: ignore[operator]
    for name in ("guard off", "guard on"):
        ours = fn(runs[name], base)  # type: ignore[operator]
        print(f"  {what}: {name} / litellm = {ours:.2f} / {theirs:.2f} ms = {ours / theirs:.2f}")


def _concurrency_table(
    title: str, runs: dict[str, dict[int, Sample]], bound_ms: float, stream: bool
) -> None:
    what = "req/s, p99 ms [TTFT p99 ms]" if stream else "req/s, p99 ms"
    print(f"\n{title}: closed loop, {what} per concurrency c; !N = N errors")
    levels = sorted(next(iter(runs.values())))
    width = 10 if stream else 0
    cols = "".join(f"  {'c=' + str(c):>7} {'p99':>7}{'':{width + 4}}" for c in levels)
    print(f"{'target':<11}{cols}  best req/s at p99<={bound_ms:g} ms")
    best: dict[str, float] = {}
    for name, by_level in runs.items():
        if not by_level:
            continue  # not in the concurrency runs (the forwarder)
        line = f"{name:<11}"
        best[name] = 0.0
        for c in levels:
            s = by_level[c]
            rps = len(s.total) / s.elapsed if s.elapsed else 0.0
            p99 = _q(s.total, 0.99)
            extra = f"[{_q(s.first, 0.99):6.1f}]" if stream else ""
            err = f"!{s.errors}" if s.errors else ""
            line += f"  {rps:7.0f} {p99:7.1f}{extra}{err:<4}"
            if p99 <= bound_ms and not s.errors:
                best[name] = max(best[name], rps)
        print(line + f"  {best[name]:8.0f}")
    if best.get("litellm"):
        for name in ("guard off", "guard on"):
            ratio = best[name] / best["litellm"]
            print(f"  throughput at p99<={bound_ms:g} ms: {name} / litellm = {ratio:.2f}x")


# --------------------------------------------------------------------------- main


@contextlib.contextmanager
def _servers(work: Path, with_litellm: bool, base: Path | None) -> Iterator[list[Target]]:
    fake = _start_fake(work)
    targets = [fake]
    try:
        targets.append(_start_labelgate("guard off", work, fake, {"enabled": False}))
        state = str(work / "state")
        targets.append(_start_labelgate("guard on", work, fake, {"state_dir": state}))
        targets.append(_start_forwarder(work, fake))
        if base is not None:  # the same server from another checkout, e.g. before a change
            base_state = {"state_dir": str(work / "base-state")}
            targets.append(_start_labelgate("base on", work, fake, base_state, base.resolve()))
        lite = _start_litellm(work, fake) if with_litellm else None
        if lite is not None:
            targets.append(lite)
        yield targets
    finally:
        _stop(targets)


async def _run(args: argparse.Namespace, targets: list[Target], work: Path) -> None:
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for target in list(targets):
            wait = 180.0 if target.name == "litellm" else 60.0
            if not await _wait(session, target, wait):
                if target.name != "litellm":
                    raise RuntimeError(f"{target.name} did not come up (log in {work})")
                log = (work / "litellm.log").read_text(errors="replace")[-1500:]
                print(f"litellm: skipped (its proxy did not become ready):\n{log}")
                targets.remove(target)
        for target in targets:  # warm every path: connections, imports, caches
            for stream in (False, True):
                await sequential(session, target.url, 20, stream)
        deadline = time.monotonic() + args.max_seconds
        rounds = 5
        # The same prompt every time (caches warm), then a new one each time (real traffic).
        for unique, stream in ((False, False), (False, True), (True, False), (True, True)):
            runs = {t.name: Sample() for t in targets}
            for k in range(rounds):  # interleaved, so drift hits every target alike
                for t in _in_turn(targets, k):
                    cpu = cpu_seconds(t.proc.pid)
                    got = await sequential(session, t.url, max(1, args.n // rounds), stream, unique)
                    got.cpu = cpu_seconds(t.proc.pid) - cpu
                    runs[t.name].add(got)
            title = ("stream" if stream else "non-stream") + (", new prompts" if unique else "")
            _sequential_table(title, runs, stream)
        levels = [int(c) for c in args.concurrency.split(",")]
        for stream in (False, True):
            if time.monotonic() > deadline:
                print("\n(time budget spent: concurrency runs cut short)")
                break
            conc: dict[str, dict[int, Sample]] = {t.name: {} for t in targets}
            measured = [t for t in targets if t.name != "forwarder"]
            for c in levels:
                for t in measured:
                    conc[t.name][c] = Sample()
                for k in range(2):  # each window in two halves, the targets in both orders
                    for t in _in_turn(measured, k):
                        half = await closed_loop(session, t.url, c, args.seconds / 2, stream)
                        conc[t.name][c].add(half)
            _concurrency_table(
                "stream" if stream else "non-stream", conc, args.p99_bound_ms, stream
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=300, help="sequential requests per target")
    parser.add_argument("--seconds", type=float, default=3.0, help="per concurrency window")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--p99-bound-ms", type=float, default=100.0)
    parser.add_argument("--max-seconds", type=float, default=900.0, help="whole-run budget")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's proxy")
    parser.add_argument(
        "--base",
        type=Path,
        help="another checkout (e.g. `git archive HEAD~1 | tar -x -C DIR`): its guard-on "
        "server is measured side by side as `base on`",
    )
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f} at start")
    work = Path(tempfile.mkdtemp(prefix="labelgate-bench-proxy-"))
    try:
        with _servers(work, not args.no_litellm, args.base) as targets:
            asyncio.run(_run(args, targets, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
