"""What the fuzz tests share: raw HTTP exchanges on loopback and the properties every answer
must have (tests/test_fuzz_requests.py, tests/test_fuzz_schema.py, tests/bench/fuzz_tally.py).

Requests are written to the socket byte for byte (any header value, any body), answers are
read with h11; a connection closed without an answer is a *dropped* exchange.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import yaml
from hypothesis import strategies as st
from pydantic import ValidationError

from labelgate.guard.audit import AuditStore
from labelgate.proxy.errors import ErrorBody

Header = tuple[str, bytes]  # (name, value bytes as sent)
_TOKEN = re.compile(r"approver token in (\S+)")
_RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


class ServeProcess:
    """``labelgate serve --config`` in a child process on a free loopback port (a process of
    its own: hypothesis seeds the global ``random`` per example, which OpenTelemetry's span
    ids come from, so a server in the test's process would mint the same span ids again)."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        path = workdir / "proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        self.state_dir = Path(config["guard"]["state_dir"])
        command = [sys.executable, "-m", "labelgate", "serve", "--config", str(path), "--port", "0"]
        self._proc = subprocess.Popen(
            command, cwd=workdir, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        self.lines: list[str] = []
        self._up = threading.Event()
        self.port = 0
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._up.wait(120) or not self.port:
            self.stop()
            raise RuntimeError("labelgate serve did not start:\n" + "".join(self.lines))

    def _drain(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self.lines.append(line)
            found = _RUNNING.search(line)
            if found:
                self.port = int(found.group(1))
                self._up.set()
        self._up.set()  # the process ended

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def audit_path(self) -> Path:
        return self.state_dir / "audit.db"

    def approver_token(self) -> str | None:
        """The approver token a keyless server wrote (the path it printed at start)."""
        for line in self.lines:
            found = _TOKEN.search(line)
            if found:
                return Path(found.group(1)).read_text().strip()
        return None

    def stop(self) -> None:
        """Stop it as Ctrl-C would: the shutdown flushes and closes the audit store."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            self._proc.wait(60)


@dataclass(slots=True)
class Exchange:
    """One request and what came back (``status`` None: the connection was dropped)."""

    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def request_id(self) -> str | None:
        return self.headers.get("x-request-id")


def exchange(
    port: int, method: str, path: str, headers: Iterable[Header], body: bytes = b""
) -> Exchange:
    """Send one request as raw bytes to 127.0.0.1:``port`` and read the whole answer
    (``Host: 127.0.0.1`` unless ``headers`` has one)."""
    headers = list(headers)
    lines = [f"{method} {path} HTTP/1.1".encode(), b"connection: close"]
    if not any(name == "host" for name, _ in headers):
        lines.append(b"host: 127.0.0.1")
    lines += [name.encode() + b": " + value for name, value in headers]
    lines.append(b"content-length: %d" % len(body))
    raw = b"\r\n".join(lines) + b"\r\n\r\n" + body
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        return _read(sock)


def _read(sock: socket.socket) -> Exchange:
    conn = h11.Connection(our_role=h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))  # state only
    conn.send(h11.EndOfMessage())
    found = Exchange(None)
    parts: list[bytes] = []
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return Exchange(None)
        if event is h11.NEED_DATA:
            data = sock.recv(65536)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Response):
            found.status = event.status_code
            found.headers = {k.decode(): v.decode("latin-1") for k, v in event.headers}
        elif isinstance(event, h11.Data):
            parts.append(bytes(event.data))
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            found.body = b"".join(parts)
            return found if isinstance(event, h11.EndOfMessage) else Exchange(None)


def openai_error(body: bytes) -> bool:
    """Is ``body`` ``{"error": {"message", "type", "param", "code"}}``?"""
    try:
        ErrorBody.model_validate_json(body)
    except ValidationError:
        return False
    return True


RECORDED = ("/v1/chat/completions", "/v1/embeddings", "/v1/labelgate/documents")
PROBES = ("/healthz", "/readyz")


def must_record(path: str, status: int) -> bool:
    """What the audit store holds (docs/proxy.md): every request to the model and documents
    endpoints, and every error elsewhere but the probes."""
    return path in RECORDED or (status >= 400 and path not in PROBES)


@dataclass(slots=True)
class Tally:
    """What a fuzz run saw; ``problems`` is empty when every property held."""

    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: int = 0
    dropped: int = 0
    not_openai: int = 0
    no_request_id: int = 0
    ids: list[str] = field(default_factory=list)
    examples: dict[str, str] = field(default_factory=dict)  # problem -> one request showing it

    def see(self, answer: Exchange, what: str, path: str = "/v1/chat/completions") -> list[str]:
        """Count ``answer`` to a request for ``path``; the properties it breaks (none: all
        held). Its id is kept to check its record if it must have one (``must_record``)."""
        self.sent += 1
        if answer.status is None:
            return self._problem("dropped", what)
        self.statuses[answer.status] += 1
        found: list[str] = []
        if answer.status >= 500:
            found += self._problem("server_errors", what)
        if answer.status >= 400 and not openai_error(answer.body):
            found += self._problem("not_openai", what)
        if answer.request_id is None:
            found += self._problem("no_request_id", what)
        elif must_record(path, answer.status):
            self.ids.append(answer.request_id)
        return [f"{problem}: {answer.status} {answer.body[:200]!r}" for problem in found]

    def _problem(self, name: str, what: str) -> list[str]:
        setattr(self, name, getattr(self, name) + 1)
        self.examples.setdefault(name, what[:300])
        return [name]

    def unrecorded(self, store: AuditStore) -> list[str]:
        return [rid for rid in self.ids if store.get_request(rid) is None]

    def summary(self, unrecorded: int | None = None) -> Mapping[str, object]:
        return {
            "sent": self.sent,
            "5xx": self.server_errors,
            "dropped": self.dropped,
            "not_openai_shaped": self.not_openai,
            "no_x_request_id": self.no_request_id,
            "unrecorded": unrecorded,
            "statuses": dict(sorted(self.statuses.items())),
        }


# --------------------------------------------------------------------------- mutated requests

VALID: dict[str, Any] = {
    "model": "fake-chat",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "hello"}]},
    ],
    "user": "ada",
    "metadata": {"session_id": "s-1"},
    "labelgate": {
        "messages": {"1": {"kind": "document", "label": {"confidentiality": "internal"}}}
    },
    "stream": False,
}
Place = tuple[str | int, ...]


def _paths(value: Any, here: Place = ()) -> list[Place]:
    """Every place in ``value`` a mutation can hit (the root excluded)."""
    found: list[Place] = [here] if here else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*here, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _paths(inner, (*here, index))
    return found


def _set(value: Any, path: Place, new: Any) -> Any:
    """A copy of ``value`` with ``path`` set to ``new`` (or removed, for ``_GONE``)."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = list(value) if isinstance(value, list) else dict(value)
    if rest or new is not _GONE:
        copy[head] = _set(value[head], rest, new)  # type: ignore[index]
    elif isinstance(copy, dict):
        copy.pop(head, None)
    else:
        copy.pop(head)  # type: ignore[arg-type]
    return copy


_GONE = object()
any_text = st.text(st.characters(codec=None), max_size=40)  # any code point, controls too
any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=6,
)
_TEXT_PLACES: list[Place] = [
    ("user",),
    ("metadata", "session_id"),
    ("labelgate", "messages", "1", "label", "confidentiality"),
    ("labelgate", "messages", "1", "label", "integrity"),
    ("messages", 1, "content", 0, "text"),
]


@st.composite
def mutated_request(draw: st.DrawFn) -> dict[str, Any]:
    """The valid request with one to three places changed: any JSON value at any field, a
    field removed, or any text (control characters, unknown label levels) where text goes."""
    body: Any = dict(VALID, stream=draw(st.booleans()))
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            path = draw(st.sampled_from(_TEXT_PLACES))
            new: Any = draw(any_text)
        else:
            path = draw(st.sampled_from(_paths(body) or [("model",)]))
            new = draw(st.just(_GONE) | any_json)
        try:
            body = _set(body, path, new)
        except (KeyError, IndexError, TypeError):  # an earlier mutation removed the place
            continue
    return body  # type: ignore[no-any-return]


# Header values as a client could put them on the wire: any text, sent as UTF-8, without the
# bytes HTTP forbids in a field value (CR, LF, NUL and other controls except tab), which the
# server's HTTP parser refuses before any application sees the request.
_FIELD_TEXT = st.text(
    st.characters(codec=None, exclude_categories=("Cc", "Cs")) | st.sampled_from("\t"),
    max_size=40,
)


@st.composite
def client_headers(draw: st.DrawFn) -> list[Header]:
    """X-Labelgate-Agent / X-Labelgate-Session / traceparent of any text, or absent."""
    found: list[Header] = []
    for name in ("x-labelgate-agent", "x-labelgate-session", "traceparent"):
        if draw(st.booleans()):
            found.append((name, draw(_FIELD_TEXT).strip().encode()))
    return found
