"""The pass-through SSE reader: a read's chunks up to its first text at once and the rest
batched, lines split across reads,
and a bad line or a missing [DONE] still failing as before."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from labelgate.proxy.router import _paced
from labelgate.proxy.upstream import UpstreamError, WireBatch, _sse_batches


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


async def test_a_chunk_keeps_the_bytes_it_came_in() -> None:
    got, _ = await _collect([b'data:{"a": 1}\n\ndata:  {"b":2}  \n\ndata: [DONE]\n\n'])
    (batch,) = got
    assert isinstance(batch, WireBatch)
    assert batch == [{"a": 1}, {"b": 2}]
    assert batch.lines == [b'{"a": 1}', b'{"b":2}']


async def _spaced(gaps: list[float]) -> AsyncIterator[list[Any]]:
    for n, gap in enumerate(gaps):
        await asyncio.sleep(gap)
        yield [n]


async def _taken(chunks: AsyncIterator[list[Any]], pause: float = 0.0) -> list[Any]:
    got = []
    async for batch in chunks:
        got += batch
        await asyncio.sleep(pause)  # the client reading slowly: not the upstream's time
    return got


async def test_a_steady_stream_longer_than_the_timeout_is_not_stalled() -> None:
    assert await _taken(_paced(_spaced([0.06] * 6), 0.1)) == list(range(6))


async def test_a_slow_reader_does_not_make_a_stall() -> None:
    assert await _taken(_paced(_spaced([0.0] * 3), 0.05), pause=0.12) == [0, 1, 2]


async def test_a_stream_that_stops_coming_is_stalled_after_what_came() -> None:
    got: list[Any] = []
    with pytest.raises(UpstreamError, match=r"stalled after 0\.1s"):
        async for batch in _paced(_spaced([0.0, 0.0, 5.0]), 0.1):
            got += batch
    assert got == [0, 1]


async def test_a_cancel_from_outside_is_not_taken_for_a_stall() -> None:
    task = asyncio.ensure_future(_taken(_paced(_spaced([0.0, 5.0]), 0.1)))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
