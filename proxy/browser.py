"""Keyless mode, safe from browsers: what a web page the user opens could otherwise send.

With no API keys the proxy binds loopback and admits whoever connects; a browser connects
from the user's machine too. So, keyless, every request (every path, checked before any
routing, the hot chat and embeddings paths included) must:

- name loopback in ``Host`` (``127.0.0.1``, ``localhost``, ``[::1]``, any port): a page on
  ``evil.example`` whose name an attacker re-points at 127.0.0.1 (DNS rebinding) sends its
  own name. Refused with 403 ``host_not_allowed``;
- not come from another site: an ``Origin`` that is not loopback (``null`` included) or
  ``Sec-Fetch-Site: cross-site`` is refused with 403 ``cross_origin_request``;
- for a POST, be ``Content-Type: application/json``: a page may send ``text/plain`` or form
  bodies cross-origin without asking (a "simple request", no CORS preflight), and JSON parsed
  from one would be served. Refused with 415 ``unsupported_media_type``.

With keys, a browser cannot send the bearer key on its own (it is no cookie), so none of this
applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from labelgate.proxy.config import is_loopback
from labelgate.proxy.errors import ProxyError

_JSON = "application/json"


def _host_is_loopback(host: str) -> bool:
    """``host`` as a Host header has it (``name[:port]``, ``[v6][:port]``)."""
    if host.startswith("["):
        name = host[1 : host.find("]")] if "]" in host else ""
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return is_loopback(name.lower())


def _origin_is_loopback(origin: str) -> bool:
    try:
        parts = urlsplit(origin)
        name = parts.hostname or ""
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and is_loopback(name)


def _forbidden(message: str, code: str) -> ProxyError:
    return ProxyError(403, message, type="permission_error", code=code)


class BrowserShield:
    """The keyless checks; ``refusal`` answers what to refuse a request with, or None."""

    def __init__(self) -> None:
        self._hosts: set[str] = set()  # Host values seen to be loopback (a handful)

    def refusal(self, method: str, headers: Mapping[str, str]) -> ProxyError | None:
        host = headers.get("host")
        if host is not None and host not in self._hosts:
            if not _host_is_loopback(host):
                return _forbidden(
                    f"Host {host!r} is not loopback: without API keys only 127.0.0.1, "
                    "localhost and [::1] are served (DNS rebinding)",
                    "host_not_allowed",
                )
            if len(self._hosts) < 64:
                self._hosts.add(host)
        origin = headers.get("origin")
        if origin is not None and not _origin_is_loopback(origin):
            return _forbidden(
                f"cross-origin request from {origin!r} refused: without API keys only "
                "loopback origins are served",
                "cross_origin_request",
            )
        if headers.get("sec-fetch-site") == "cross-site":
            return _forbidden("cross-site request refused (Sec-Fetch-Site)", "cross_origin_request")
        if method == "POST":
            media = headers.get("content-type", "").partition(";")[0].strip().lower()
            if media != _JSON:
                return ProxyError(
                    415,
                    f"Content-Type must be {_JSON} (got {media or 'none'!r})",
                    code="unsupported_media_type",
                )
        return None
