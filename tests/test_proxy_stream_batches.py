"""The pass-through SSE reader: a read's first chunk at once and the rest batched, lines split
across reads,
and a bad line or a missing [DONE] still failing as before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from proxy.upstream import UpstreamError, _sse_batches


async def _pieces(reads: list[bytes]) -> AsyncIterator[bytes]:
    for read in reads:
        yield read


async def _collect(reads: list[bytes]) -> tuple[list[list[Any]], UpstreamError | None]:
    got: list[list[Any]] = []
    try:
        async for batch in _sse_batches(_pieces(reads), 1.0):
            got.append(batch)
    except UpstreamError as exc:
        return got, exc
    return got, None


async def test_a_reads_first_event_comes_alone_and_the_rest_together() -> None:
    read = b'data: {"a": 1}\n\ndata: {"a": 2}\n\ndata: {"a": 3}\n\n'
    got, err = await _collect([read, b'data: {"a": 4}\n\n', b"data: [DONE]\n\n"])
    assert err is None
    assert got == [[{"a": 1}], [{"a": 2}, {"a": 3}], [{"a": 4}]]


async def test_a_line_split_across_reads_is_joined() -> None:
    reads = [b'data: {"a"', b": 1}\r\n\r\n: comment\n", b"event: x\ndata: [DO", b"NE]"]
    got, err = await _collect(reads)
    assert err is None
    assert got == [[{"a": 1}]]


async def test_good_chunks_before_a_bad_line_are_still_sent() -> None:
    got, err = await _collect([b'data: {"a": 1}\n\ndata: {oops\n\n'])
    assert got == [[{"a": 1}]]
    assert err is not None and err.kind == "garbage"


@pytest.mark.parametrize(
    ("reads", "kind"),
    [
        ([b'data: {"a": 1}\n\n'], "connection"),  # no [DONE]
        ([b"data: [1, 2]\n\n"], "garbage"),  # not an object
        ([b'data: {"error": {"message": "x"}}\n\n'], "status"),
    ],
)
async def test_broken_streams_fail(reads: list[bytes], kind: str) -> None:
    _, err = await _collect(reads)
    assert err is not None and err.kind == kind
