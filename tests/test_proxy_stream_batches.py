"""The pass-through SSE reader: a read's chunks up to its first text at once and the rest
batched, lines split across reads,
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
        async for batch in _sse_batches(_pieces(reads)):
            got.append(batch)
    except UpstreamError as exc:
        return got, exc
    return got, None


def _text(text: str) -> bytes:
    return b'data: {"choices": [{"delta": {"content": "%s"}}]}\n\n' % text.encode()


async def test_a_read_goes_out_up_to_its_first_text_then_the_rest_together() -> None:
    role = b'data: {"choices": [{"delta": {"role": "assistant", "content": ""}}]}\n\n'
    got, err = await _collect(
        [role + _text("a") + _text("b") + _text("c"), _text("d") + _text("e"), b"data: [DONE]\n\n"]
    )
    assert err is None
    texts = [[c["choices"][0]["delta"]["content"] for c in batch] for batch in got]
    assert texts == [["", "a"], ["b", "c"], ["d"], ["e"]]


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
