"""Fail closed for streams too, on a real full disk (a tmpfs holding the guard's state): an
answer leaves only once its record is journaled. A request whose record cannot be journaled
gets a ``guard_error`` before the first chunk, streamed or not; a stream that began while its
record still fitted has it (as interrupted, if its end no longer fits), stored at the next
start; never model text without a record."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
from proxy_fixtures import Guarded, fake, fake_url, passthrough_config  # noqa: F401 (fixtures)
from tmpfs import fill, tmpfs

BODY = {"model": "fake-chat", "messages": [{"role": "user", "content": "say something"}]}
TRIES = 200  # the files' last pages have some room left: requests until it is used up


def _outcome(response: httpx.Response) -> str:
    """'refused' (a guard_error, no model text), 'answered' (whole) or 'cut' (a stream whose
    text came before an error event)."""
    if response.status_code == 500:
        assert response.json()["error"]["type"] == "guard_error"
        assert "echo" not in response.text  # not a word of the model's answer
        return "refused"
    assert response.status_code == 200, response.text
    return "cut" if '"error"' in response.text else "answered"


def test_a_full_disk_refuses_answers_before_any_text(tmp_path: Path, fake_url: str) -> None:  # noqa: F811
    with tmpfs(tmp_path / "state", "8m") as state:
        config = {**passthrough_config(fake_url), "guard": {"state_dir": str(state)}}
        proxy = Guarded(config, None)
        seen: list[tuple[bool, str, str]] = []  # (streamed, outcome, request id)
        try:
            assert httpx.post(f"{proxy.url}/chat/completions", json=BODY).status_code == 200
            fill(state / "filler")
            for i in range(TRIES):
                stream = i % 2 == 0
                response = httpx.post(
                    f"{proxy.url}/chat/completions", json={**BODY, "stream": stream}
                )
                seen.append((stream, _outcome(response), response.headers["x-request-id"]))
                if {(True, "refused"), (False, "refused")} <= {(s, o) for s, o, _ in seen}:
                    break
        finally:
            proxy.server.stop()  # its writer cannot flush to a full disk: no clean close
        outcomes = {(s, o) for s, o, _ in seen}
        assert (True, "refused") in outcomes and (False, "refused") in outcomes, seen
        (state / "filler").unlink()  # room again: the next start stores what was journaled
        Guarded(config, None).stop()
        with sqlite3.connect(state / "audit.db") as conn:
            recorded = {row[0] for row in conn.execute("select id from requests")}
    with_text = {rid for _, outcome, rid in seen if outcome != "refused"}
    assert with_text <= recorded, f"{len(with_text - recorded)} answers without a record"
