"""Message contents, stored once each, keyed by their SHA-256 (``contents`` table).

Agents resend their whole conversation with every call, so the same system prompt, document
or earlier answer would otherwise be stored again with every request. A ``messages`` row holds
``content_sha256`` (the hex SHA-256 of its text as UTF-8) and the text is a row of ``contents``:

- ``sha256``: the key; ``size``: the text's length in UTF-8 bytes;
- ``text``: the text itself, when it is at most ``PACK_BYTES`` long (full-text indexed by
  ``contents_fts``);
- ``packed``: the zlib-compressed UTF-8 of a longer text (``text`` is then null: not in the
  full-text index, restored by ``unpack`` for ``labelgate trace``, the UI and the Python API).

The hash chain still binds each message record to its exact text: a message row is hashed
with its text in place of the reference (``chain.hashed_row``), as it was before contents were
shared, so a changed ``contents`` row breaks the hash of every message that uses it.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Mapping
from typing import Any

PACK_BYTES = 256 * 1024  # longer texts are stored compressed (and not full-text indexed)
REF = "content_sha256"  # the messages column that refers to a contents row


def content_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def content_row(text: str, sha256: str | None = None) -> dict[str, Any]:
    """The ``contents`` row of a text: plain up to ``PACK_BYTES``, compressed past it."""
    data = text.encode()
    if sha256 is None:
        sha256 = hashlib.sha256(data).hexdigest()
    if len(data) <= PACK_BYTES:
        return {"sha256": sha256, "size": len(data), "text": text, "packed": None}
    return {"sha256": sha256, "size": len(data), "text": None, "packed": zlib.compress(data, 6)}


def unpack(text: str | None, packed: bytes | None) -> str | None:
    """The text of a contents row (``text``, or ``packed`` decompressed)."""
    if text is not None:
        return text
    if packed is not None:
        return zlib.decompress(packed).decode()
    return None


VIEW = "message_texts"  # messages with their text joined back (``content``, ``content_size``)


def message_content(row: Mapping[str, Any]) -> str | None:
    """The text of a ``message_texts`` row (a packed text unpacked)."""
    content = row.get("content")
    if content is not None:
        return str(content)
    return unpack(None, row.get("content_packed"))
