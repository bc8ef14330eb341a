"""Header values built safely from any client string, and read back the same way.

A header value must be bytes a client's HTTP parser accepts: printable ASCII (and tab).
A session id may come from ``user`` or ``metadata.session_id`` (any JSON string: other
scripts, CR/LF, NUL), so labelgate's own text headers (``X-Labelgate-Session``,
``X-Labelgate-Agent``) carry their text **percent-encoded as UTF-8** wherever it holds
anything but printable ASCII other than ``%`` (``user:ユーザー`` ->
``user:%E3%83%A6%E3%83%BC%E3%82%B6%E3%83%BC``); printable ASCII ids without ``%`` are
unchanged. Incoming values are decoded the same way, so a client can send back what it got.
JSON headers (``X-Labelgate-Label``, ``X-Labelgate-Decisions``) escape everything outside
printable ASCII (``\\uXXXX``).
"""

from __future__ import annotations

import json
import string
from typing import Any
from urllib.parse import quote, unquote

import orjson

_KEPT = "".join(c for c in string.printable if c.isprintable() and c != "%")  # " " to "~"


def header_text(value: str) -> str:
    """``value`` as a header value: itself when printable ASCII without ``%``, else
    percent-encoded UTF-8 (lone surrogates from a JSON body included)."""
    if value.isascii() and value.isprintable() and "%" not in value:
        return value
    return quote(value.encode("utf-8", "surrogatepass"), safe=_KEPT)


def text_of_header(raw: str) -> str:
    """The text a header value carries (``raw`` as the server decoded it: latin-1): UTF-8
    bytes are read as UTF-8, then percent-escapes decoded (the inverse of ``header_text``)."""
    if not raw.isascii():
        try:
            raw = raw.encode("latin-1").decode("utf-8")
        except UnicodeError:
            return raw  # not UTF-8: kept as the bytes came
    if "%" not in raw:
        return raw
    try:
        return unquote(raw, errors="surrogatepass")
    except UnicodeDecodeError:  # escapes of bytes that are not UTF-8: not ours, kept as sent
        return raw


def header_json(value: Any) -> str:
    """Compact JSON for a header value: printable ASCII only (orjson's, unless it holds
    other characters, which the standard library escapes; DEL, which neither escapes, as
    ``\\u007f``)."""
    try:
        fast = orjson.dumps(value)
    except TypeError:  # lone surrogates: the standard library escapes them
        fast = b"\xff"
    if not fast.isascii():
        fast = json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode()
    if b"\x7f" in fast:  # only inside strings, where the escape means the same
        fast = fast.replace(b"\x7f", b"\\u007f")
    return fast.decode()
