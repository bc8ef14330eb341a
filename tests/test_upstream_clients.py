"""The pass-through upstream's HTTP client, as a deployment sees it: the environment's proxy
(``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``, ``NO_PROXY``), CA bundles and client
certificates, and the event-stream reader, all on loopback.

The gateway runs in process (``httpx.ASGITransport``), the OpenAI SDK in front of it; the
upstream, a forward proxy (``CONNECT`` tunnels for https, absolute-form forwarding for http)
and TLS with a throwaway CA (``trustme``) are real servers on 127.0.0.1 in the test's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import orjson
import pytest
import trustme

from labelgate.proxy.app import ProxyState, create_app
from labelgate.proxy.config import ConfigError, load_config, parse_config
from labelgate.proxy.upstream import MAX_LINE_BYTES, UpstreamError, WireBatch, _sse_batches
from labelgate.proxy.upstream_clients import proxy_for

PROXY_VARIABLES = [f"{name}_proxy" for name in ("http", "https", "all", "no")] + [
    f"{name.upper()}_PROXY" for name in ("http", "https", "all", "no")
]
HELLO = [{"role": "user", "content": "hello"}]


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def _sse(*events: bytes) -> bytes:
    return b"".join(b"data: " + event + b"\n\n" for event in events)


PLAIN_STREAM = _sse(
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"content": "hi"}),
    _chunk({}, "stop"),
    b"[DONE]",
)
COMPLETION = orjson.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
)


# --------------------------------------------------------------------------- servers


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


@dataclass
class Upstream:
    """An OpenAI-ish upstream: a completion, or ``stream`` (bytes) for a streamed request."""

    stream: bytes = PLAIN_STREAM
    port: int = 0
    heads: list[bytes] = field(default_factory=list)
    client_certs: list[Any] = field(default_factory=list)
    scheme: str = "http"

    @property
    def api_base(self) -> str:
        return f"{self.scheme}://localhost:{self.port}/v1"


@contextlib.asynccontextmanager
async def _listening(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[tuple[int, list[asyncio.StreamWriter]]]:
    """A server on 127.0.0.1; on the way out its connections are closed (the writers in the
    list, which handlers may add to) and their handlers awaited."""
    writers: list[asyncio.StreamWriter] = []
    handlers: list[asyncio.Task[Any]] = []

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            await handle(reader, writer)
        writer.close()

    listener = await asyncio.start_server(tracked, "127.0.0.1", 0, ssl=tls)
    try:
        yield listener.sockets[0].getsockname()[1], writers
    finally:
        listener.close()
        for writer in writers:
            writer.close()
        await asyncio.gather(*handlers, return_exceptions=True)


@contextlib.asynccontextmanager
async def upstream(
    stream: bytes = PLAIN_STREAM, tls: ssl.SSLContext | None = None
) -> AsyncIterator[Upstream]:
    server = Upstream(stream=stream, scheme="https" if tls else "http")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.client_certs.append(writer.get_extra_info("peercert"))
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                    body = await reader.readexactly(int(_header(head, b"content-length") or 0))
                except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                    return
                server.heads.append(head)
                close = _header(head, b"connection") == b"close"
                streamed = b'"stream":true' in body
                answer = server.stream if streamed else COMPLETION
                kind = b"text/event-stream" if streamed else b"application/json"
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
                    b"set-cookie: upstream_session=secret\r\n%s\r\n"
                    % (kind, len(answer), b"connection: close\r\n" if close else b"")
                    + answer
                )
                await writer.drain()
                if close:
                    return
        finally:
            writer.close()

    async with _listening(handle, tls) as (port, _):
        server.port = port
        yield server


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.close()


@dataclass
class ForwardProxy:
    """A forward proxy: ``CONNECT host:port`` opens a tunnel; an absolute-form request
    (``POST http://host:port/path``) is sent on to its origin, one per connection."""

    port: int = 0
    seen: list[str] = field(default_factory=list)  # the request lines it was sent

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def forward_proxy() -> AsyncIterator[ForwardProxy]:
    proxy = ForwardProxy()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        line, *headers = head.decode("latin-1").split("\r\n")[:-2]
        method, target, version = line.split(" ")
        proxy.seen.append(f"{method} {target}")
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            origin_reader, origin_writer = await asyncio.open_connection(host, int(port))
            opened.append(origin_writer)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(_pipe(reader, origin_writer), _pipe(origin_reader, writer))
            return
        body = await reader.readexactly(int(_header(head, b"content-length") or 0))
        url = urlsplit(target)
        origin_reader, origin_writer = await asyncio.open_connection(url.hostname, url.port)
        opened.append(origin_writer)
        kept = [h for h in headers if not h.lower().startswith(("connection:", "proxy-"))]
        origin_writer.write(
            "\r\n".join(
                [f"{method} {url.path} {version}", *kept, "connection: close", "", ""]
            ).encode("latin-1")
            + body
        )
        await _pipe(origin_reader, writer)
        origin_writer.close()

    async with _listening(handle) as (port, opened):
        proxy.port = port
        yield proxy


# --------------------------------------------------------------------------- gateway


@contextlib.asynccontextmanager
async def gateway(
    api_base: str, **params: Any
) -> AsyncIterator[tuple[openai.AsyncOpenAI, ProxyState]]:
    """The gateway in process with one pass-through model ``m`` to ``api_base``, and the SDK
    in front of it. The environment is read here, as ``labelgate serve`` reads it at start."""
    settings = params.pop("litellm_settings", {})
    entry = {
        "model_name": "m",
        "litellm_params": {"model": "openai/m", "api_base": api_base, "timeout": 10, **params},
    }
    config = parse_config({"model_list": [entry], "litellm_settings": settings})
    state = ProxyState(config, None, {})
    app = create_app(config, state=state)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")
    sdk = openai.AsyncOpenAI(
        base_url="http://127.0.0.1/v1", api_key="sk-test", max_retries=0, http_client=http
    )
    try:
        yield sdk, state
    finally:
        await sdk.close()
        await state.client.aclose()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variable from the machine's environment, the system's authorities only."""
    for name in [*PROXY_VARIABLES, "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUEST_METHOD"]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@dataclass
class Pki:
    ca: trustme.CA
    ca_file: Path
    cert_file: Path  # a client certificate the CA issued
    key_file: Path
    both_file: Path  # the same certificate and its key in one PEM

    def server_context(self, require_client_cert: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            self.ca.configure_trust(context)
        return context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA()
    client = ca.issue_cert("agent@labelgate.test")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
    client.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    client.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "client-both.pem"))
    return Pki(
        ca,
        tmp_path / "ca.pem",
        tmp_path / "client.pem",
        tmp_path / "client.key",
        tmp_path / "client-both.pem",
    )


async def _chat_and_stream(sdk: openai.AsyncOpenAI) -> tuple[str | None, str]:
    answer = await sdk.chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
    chunks = await sdk.chat.completions.create(model="m", messages=HELLO, stream=True)  # type: ignore[arg-type]
    text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    return answer.choices[0].message.content, text


# --------------------------------------------------------------------------- proxies


async def test_http_proxy_carries_plain_http_upstream_requests(
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    async with upstream() as origin, forward_proxy() as proxy:
        no_proxy_env.setenv("HTTP_PROXY", proxy.url)
        async with gateway(origin.api_base) as (sdk, _state):
            assert await _chat_and_stream(sdk) == ("hi", "hi")
    target = f"http://localhost:{origin.port}/v1/chat/completions"
    assert proxy.seen == [f"POST {target}", f"POST {target}"]
    assert len(origin.heads) == 2
    assert all(b"cookie" not in head.lower().replace(b"set-cookie", b"") for head in origin.heads)


async def test_https_proxy_tunnels_https_upstreams_with_connect(
    no_proxy_env: pytest.MonkeyPatch, pki: Pki
) -> None:
    async with upstream(tls=pki.server_context()) as origin, forward_proxy() as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
        no_proxy_env.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # for http only: unused
        async with gateway(origin.api_base, ssl_verify=str(pki.ca_file)) as (sdk, _):
            assert await _chat_and_stream(sdk) == ("hi", "hi")
            assert await _chat_and_stream(sdk) == ("hi", "hi")
    # Tunnels, kept alive between requests (a streamed answer's connection is kept once its
    # end is read, in the background: a request may come first and open another).
    assert set(proxy.seen) == {f"CONNECT localhost:{origin.port}"}
    assert len(proxy.seen) < 4
    assert len(origin.heads) == 4
    assert not any(b"\r\ncookie:" in head.lower() for head in origin.heads)


async def test_all_proxy_applies_when_no_scheme_proxy_is_set(
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    async with upstream() as origin, forward_proxy() as proxy:
        no_proxy_env.setenv("ALL_PROXY", proxy.url)
        async with gateway(origin.api_base) as (sdk, _):
            assert await _chat_and_stream(sdk) == ("hi", "hi")
    assert len(proxy.seen) == 2


@pytest.mark.parametrize("no_proxy", ["localhost", "*", "example.com,localhost", ".localhost"])
async def test_no_proxy_sends_requests_directly(
    no_proxy_env: pytest.MonkeyPatch, pki: Pki, no_proxy: str
) -> None:
    async with upstream(tls=pki.server_context()) as origin, forward_proxy() as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
        no_proxy_env.setenv("NO_PROXY", no_proxy)
        async with gateway(origin.api_base, ssl_verify=str(pki.ca_file)) as (sdk, _state):
            assert await _chat_and_stream(sdk) == ("hi", "hi")
    assert proxy.seen == []
    assert len(origin.heads) == 2


def test_which_proxy_applies(no_proxy_env: pytest.MonkeyPatch) -> None:
    no_proxy_env.setenv("HTTPS_PROXY", "proxy.internal:3128")  # no scheme: http://
    no_proxy_env.setenv("NO_PROXY", "llm.internal,10.0.0.7,api.example.com:8443")
    assert proxy_for("https://api.openai.com/v1") == "http://proxy.internal:3128"
    assert proxy_for("http://api.openai.com/v1") is None  # HTTP_PROXY is not set
    assert proxy_for("https://llm.internal/v1") is None
    assert proxy_for("https://gpu.llm.internal/v1") is None  # a subdomain
    assert proxy_for("https://notllm.internal/v1") == "http://proxy.internal:3128"
    assert proxy_for("https://10.0.0.7:8000/v1") is None
    assert proxy_for("https://api.example.com:8443/v1") is None
    assert proxy_for("https://api.example.com/v1") == "http://proxy.internal:3128"
    no_proxy_env.setenv("https_proxy", "http://lower:1")  # lower-case names win, as in urllib
    assert proxy_for("https://api.openai.com/v1") == "http://lower:1"


async def test_a_proxy_that_cannot_be_reached_is_a_502(no_proxy_env: pytest.MonkeyPatch) -> None:
    async with forward_proxy() as proxy:
        closed = proxy.url
    async with upstream() as origin:
        no_proxy_env.setenv("HTTP_PROXY", closed)
        async with gateway(origin.api_base) as (sdk, _):
            with pytest.raises(openai.InternalServerError) as caught:
                await sdk.chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.status_code == 502
    assert "through proxy http://127.0.0.1" in caught.value.message


# --------------------------------------------------------------------------- TLS


async def test_a_ca_bundle_is_trusted_and_a_wrong_one_is_a_clear_502(
    no_proxy_env: pytest.MonkeyPatch, pki: Pki, tmp_path: Path
) -> None:
    other = trustme.CA()
    other.cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
    async with upstream(tls=pki.server_context()) as origin:
        async with gateway(origin.api_base, ssl_verify=str(pki.ca_file)) as (sdk, _):
            assert await _chat_and_stream(sdk) == ("hi", "hi")
        for verify in (str(tmp_path / "other-ca.pem"), None):  # another CA; the system's
            extra = {"ssl_verify": verify} if verify else {}
            async with gateway(origin.api_base, **extra) as (sdk, _):
                with pytest.raises(openai.InternalServerError) as caught:
                    await sdk.chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
                assert caught.value.status_code == 502
                body = caught.value.body
                assert isinstance(body, dict) and body["code"] == "upstream_error"
                assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message
                assert f"localhost:{origin.port}" in caught.value.message


async def test_ssl_cert_file_is_honoured(no_proxy_env: pytest.MonkeyPatch, pki: Pki) -> None:
    async with upstream(tls=pki.server_context()) as origin:
        no_proxy_env.setenv("SSL_CERT_FILE", str(pki.ca_file))
        async with gateway(origin.api_base) as (sdk, _):
            assert await _chat_and_stream(sdk) == ("hi", "hi")


async def test_ssl_verify_false_skips_verification(
    no_proxy_env: pytest.MonkeyPatch, pki: Pki
) -> None:
    async with (
        upstream(tls=pki.server_context()) as origin,
        gateway(origin.api_base, ssl_verify=False) as (sdk, _),
    ):
        assert await _chat_and_stream(sdk) == ("hi", "hi")


@pytest.mark.parametrize("through_proxy", [False, True], ids=["direct", "proxied"])
async def test_mutual_tls_with_a_client_certificate(
    no_proxy_env: pytest.MonkeyPatch, pki: Pki, through_proxy: bool
) -> None:
    server_tls = pki.server_context(require_client_cert=True)
    async with upstream(tls=server_tls) as origin, forward_proxy() as proxy:
        if through_proxy:
            no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
        verify = str(pki.ca_file)
        async with gateway(origin.api_base, ssl_verify=verify) as (sdk, _):  # no certificate
            with pytest.raises(openai.InternalServerError) as caught:
                await sdk.chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
            assert caught.value.status_code == 502
        async with gateway(
            origin.api_base,
            ssl_verify=verify,
            ssl_certificate=str(pki.cert_file),
            ssl_certificate_key=str(pki.key_file),
        ) as (sdk, _):
            assert await _chat_and_stream(sdk) == ("hi", "hi")
        global_settings = {"ssl_verify": verify, "ssl_certificate": str(pki.both_file)}
        async with gateway(origin.api_base, litellm_settings=global_settings) as (sdk, _):
            assert await _chat_and_stream(sdk) == ("hi", "hi")
    # The client certificate the upstream saw, with and without a proxy on the way:
    seen = [cert for cert in origin.client_certs if cert]
    assert len(seen) >= 2
    assert all(("email", "agent@labelgate.test") in c["subjectAltName"] for c in seen)
    assert (len(proxy.seen) > 0) == through_proxy


# --------------------------------------------------------------------------- config


def _load(tmp_path: Path, text: str) -> Exception:
    path = tmp_path / "proxy.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "\n" not in str(caught.value)
    return caught.value


def test_tls_settings_that_cannot_be_used_fail_at_load_naming_file_line_and_field(
    tmp_path: Path, pki: Pki, no_proxy_env: pytest.MonkeyPatch
) -> None:
    head = "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/m\n"
    https = head + "      api_base: https://llm.internal/v1\n"
    missing = _load(tmp_path, https + "      ssl_verify: /nowhere/ca.pem\n")
    assert str(missing) == (
        f"{tmp_path / 'proxy.yaml'}:6: model_list.0.litellm_params.ssl_verify: "
        "no such CA bundle: /nowhere/ca.pem"
    )
    not_pem = _load(tmp_path, https + f"      ssl_verify: {pki.key_file}\n")
    assert ":6: model_list.0.litellm_params.ssl_verify: cannot load CA bundle" in str(not_pem)
    assert "no certificate or crl found" in str(not_pem)
    other = trustme.CA().issue_cert("x")
    other.private_key_pem.write_to_path(str(tmp_path / "other.key"))
    mismatch = _load(
        tmp_path,
        https + f"      ssl_certificate: {pki.cert_file}\n"
        f"      ssl_certificate_key: {tmp_path / 'other.key'}\n",
    )
    assert ":6: model_list.0.litellm_params.ssl_certificate: " in str(mismatch)
    assert "key values mismatch" in str(mismatch)
    no_key = _load(tmp_path, https + f"      ssl_certificate: {pki.cert_file}\n")
    assert "ssl_certificate_key" in str(no_key)
    lonely_key = _load(tmp_path, https + f"      ssl_certificate_key: {pki.key_file}\n")
    assert "ssl_certificate_key needs an ssl_certificate" in str(lonely_key)
    in_settings = _load(
        tmp_path, head + "litellm_settings:\n  num_retries: 1\n  ssl_certificate: /nowhere.pem\n"
    )
    assert ":7: litellm_settings.ssl_certificate: no such file: /nowhere.pem" in str(in_settings)
    litellm_cert = _load(
        tmp_path,
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: anthropic/x\n"
        f"      ssl_certificate: {pki.both_file}\n",
    )
    assert ":5: model_list.0.litellm_params.ssl_certificate: client certificates apply to " in (
        str(litellm_cert)
    )
    no_proxy_env.setenv("SSL_CERT_FILE", "/nowhere/bundle.pem")
    env = _load(tmp_path, https)
    assert "environment SSL_CERT_FILE: environment variable SSL_CERT_FILE names no such " in (
        str(env)
    )


def test_tls_settings_load_and_combine(tmp_path: Path, pki: Pki) -> None:
    config = parse_config(
        {
            "model_list": [
                {
                    "model_name": "a",
                    "litellm_params": {
                        "model": "openai/a",
                        "api_base": "https://a/v1",
                        "ssl_verify": "False",
                    },
                },
                {
                    "model_name": "b",
                    "litellm_params": {
                        "model": "openai/b",
                        "api_base": "https://b/v1",
                        "ssl_certificate": str(pki.cert_file),
                        "ssl_certificate_key": str(pki.key_file),
                    },
                },
            ],
            "litellm_settings": {"ssl_verify": str(pki.ca_file)},
        }
    )
    a, b = config.model_list
    assert config.tls(a).verify is False
    assert config.tls(b).verify == str(pki.ca_file)
    assert (config.tls(b).certificate, config.tls(b).key) == (str(pki.cert_file), str(pki.key_file))
    assert config.tls(a).certificate is None
    assert not a.litellm_params.extra_params()  # not handed on as litellm parameters


def test_a_yaml_error_in_the_config_names_its_line(tmp_path: Path) -> None:
    error = _load(tmp_path, "server:\n  port: 1\n  port: 2\n")
    assert str(error) == f"{tmp_path / 'proxy.yaml'}:3: server.port: duplicate key"
    error = _load(tmp_path, "server:\n  port: [1\n")
    assert str(error).startswith(f"{tmp_path / 'proxy.yaml'}:")


# --------------------------------------------------------------------------- event streams


async def _pieces(reads: list[bytes], taken: list[int] | None = None) -> AsyncIterator[bytes]:
    for read in reads:
        if taken is not None:
            taken.append(len(read))
        yield read


async def _batches(reads: list[bytes], **limits: int) -> list[WireBatch]:
    return [batch async for batch in _sse_batches(_pieces(reads), **limits)]  # type: ignore[misc]


async def test_data_over_several_lines_is_one_event_joined_with_newlines() -> None:
    reads = [
        b'data: {"choices":\ndata:  [{"delta": {"content": "a"}}]}\n\n',
        b": a comment\nid: 7\nretry: 100\nfoo: bar\nevent: message\n",
        b'data: {"choices": [{"delta": {"content": "b"}}]}\r\n\r\n',
        b'data: {"choices": [{"delta": {"content": "c"}}]}\r',
        b'\r\ndata: {"n": 1,\r',  # CR LF split across reads; a CR alone ends a line too
        b'\ndata: "two": 2}\r\rdata: [DONE]\n\n',
    ]
    batches = await _batches(reads)
    assert [chunk for batch in batches for chunk in batch] == [
        {"choices": [{"delta": {"content": "a"}}]},
        {"choices": [{"delta": {"content": "b"}}]},
        {"choices": [{"delta": {"content": "c"}}]},
        {"n": 1, "two": 2},
    ]
    # Each chunk goes on in one line: as it came, or encoded anew when it spanned several.
    lines = [line for batch in batches for line in batch.lines]
    assert lines[1] == b'{"choices": [{"delta": {"content": "b"}}]}'
    assert all(b"\n" not in line and b"\r" not in line for line in lines)


async def test_comments_and_other_fields_are_skipped_and_data_without_space_read() -> None:
    reads = [
        b": ping\n\n",  # a comment alone: no event
        b"event: ping\nid: 1\n\n",  # fields without data: no event
        b'data:{"a": 1}\n\n',
        b'data\ndata: {"b": 2}\n\n',  # "data" alone is an empty data line
        b"data: [DONE]\n\n",
    ]
    batches = await _batches(reads)
    assert [chunk for batch in batches for chunk in batch] == [{"a": 1}, {"b": 2}]
    assert batches[1].lines == [b'{"b":2}']  # it came on two lines: encoded anew, on one


async def test_an_error_event_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="error event") as caught:
        await _batches([b'event: error\ndata: {"message": "overloaded"}\n\n'])
    assert caught.value.kind == "status"


async def test_a_line_over_the_cap_fails_without_reading_on() -> None:
    taken: list[int] = []
    reads = [b'data: {"choices": [{"delta": {"content": "a"}}]}\n\n', b"data: " + b"x" * 60]
    reads += [b"y" * 60] * 1000  # a line that never ends
    got: list[WireBatch] = []
    with pytest.raises(UpstreamError, match="line over 100 bytes") as caught:
        async for batch in _sse_batches(_pieces(reads, taken), max_line=100):
            got.append(batch)  # type: ignore[arg-type]
    assert caught.value.kind == "garbage"
    assert [chunk for batch in got for chunk in batch] == [
        {"choices": [{"delta": {"content": "a"}}]}
    ]
    assert len(taken) == 3  # stopped as soon as the line passed the cap
    with pytest.raises(UpstreamError, match="line over 100 bytes"):  # a whole line in one read
        await _batches([b"data: " + b"z" * 200 + b"\n\n"], max_line=100)


async def test_an_event_over_the_cap_fails() -> None:
    lines = b"".join(b"data: " + b"1" * 50 + b"\n" for _ in range(10))
    with pytest.raises(UpstreamError, match="event over 300 bytes"):
        await _batches([lines + b"\n"], max_line=100, max_event=300)


async def test_multi_line_data_through_the_gateway_reaches_the_sdk(
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    split = _chunk({"content": "multi"}).replace(b',"choices"', b',\ndata: "choices"')
    stream = (
        b"data: " + _chunk({"role": "assistant", "content": ""}) + b"\r\n\r\n"
        b": keep-alive\r\n\r\n"
        b"data: " + split + b"\r\n\r\n"
        b"id: 2\r\nevent: message\r\ndata: " + _chunk({"content": "-line"}) + b"\r\n\r\n"
        b"data: " + _chunk({}, "stop") + b"\r\n\r\ndata: [DONE]\r\n\r\n"
    )
    assert b',\ndata: "choices"' in stream
    async with upstream(stream) as origin, gateway(origin.api_base) as (sdk, _):
        chunks = await sdk.chat.completions.create(model="m", messages=HELLO, stream=True)  # type: ignore[arg-type]
        got = [c async for c in chunks]
    assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == "multi-line"
    assert [c.choices[0].finish_reason for c in got if c.choices][-1] == "stop"


async def test_an_overlong_line_is_a_502_before_the_first_chunk_and_an_error_event_after(
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    huge = b"data: " + b"x" * MAX_LINE_BYTES + b"\n\n"
    async with upstream(huge) as origin, gateway(origin.api_base) as (sdk, _):
        with pytest.raises(openai.InternalServerError) as caught:
            await sdk.chat.completions.create(model="m", messages=HELLO, stream=True)  # type: ignore[arg-type]
    assert caught.value.status_code == 502
    assert f"line over {MAX_LINE_BYTES} bytes" in caught.value.message
    late = _sse(_chunk({"role": "assistant", "content": "so far"})) + huge
    async with upstream(late) as origin, gateway(origin.api_base) as (sdk, _):
        chunks = await sdk.chat.completions.create(model="m", messages=HELLO, stream=True)  # type: ignore[arg-type]
        got: list[Any] = []
        with pytest.raises(openai.APIError, match=f"line over {MAX_LINE_BYTES} bytes"):
            async for chunk in chunks:
                got.append(chunk)
    assert got[0].choices[0].delta.content == "so far"
