"""The audit writer with its store in a child process (``AuditWriter(process=True)``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from labelgate.guard.audit.process import StoreProcess
from labelgate.guard.audit.records import DecisionRecord, MessageRecord, RequestRecord
from labelgate.guard.audit.store import AuditStore
from labelgate.guard.audit.writer import AuditWriteError, AuditWriter


def test_records_are_written_by_the_child_in_one_chain(tmp_path: Path) -> None:
    with AuditWriter(tmp_path / "a.db", process=True, max_delay=0.01) as writer:
        assert isinstance(writer._sink, StoreProcess)
        for i in range(300):
            request = RequestRecord(agent="a", label={"confidentiality": "public"})
            writer.submit(request)
            writer.submit(MessageRecord(request_id=request.id, position=i, content=f"m{i}"))
            writer.submit(DecisionRecord(request_id=request.id, sink="answer:a", action="allow"))
        writer.flush()
        assert writer.stats.written == 900
        child = writer._sink._process
    assert child.poll() == 0  # closed with the writer, cleanly
    with AuditStore(tmp_path / "a.db") as store:
        assert store.counts()["requests"] == 300
        assert store.counts()["ledger"] == 900
        assert store.verify().ok
        [row] = store.search_messages("m299")
        assert row["content"] == "m299"


def test_a_duplicate_is_rejected_and_the_rest_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = RequestRecord(agent="dup")
    with AuditWriter(tmp_path / "a.db", process=True, max_delay=0.2) as writer:
        writer.submit(record)
        writer.submit(RequestRecord(agent="other"))
        writer.submit(record)
        writer.flush()
        assert writer.stats.rejected == 1
        assert writer.stats.written == 2
    assert "UNIQUE constraint failed" in caplog.text
    with AuditStore(tmp_path / "a.db") as store:
        assert store.counts()["requests"] == 2
        assert store.verify().ok


def test_a_dead_child_stops_the_writer_loudly(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path / "a.db", process=True, retries=1, max_delay=0.01)
    assert isinstance(writer._sink, StoreProcess)
    writer._sink._process.kill()
    writer._sink._process.wait()
    writer.submit(RequestRecord(agent="a"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            writer.check()
        except AuditWriteError as exc:
            assert "audit process is gone" in str(exc)
            break
        time.sleep(0.02)
    else:
        pytest.fail("the writer kept accepting records with its store process dead")
    with pytest.raises(AuditWriteError):
        writer.submit(RequestRecord(agent="b"))
    with pytest.raises(AuditWriteError):
        writer.close()


PARENT = textwrap.dedent(
    """
    import os, signal, sys
    from labelgate.guard.audit.writer import AuditWriter
    from labelgate.guard.audit.records import RequestRecord
    writer = AuditWriter(sys.argv[1], process=True, batch_size=50, max_delay=0.001)
    print(writer._sink._process.pid, flush=True)
    for i in range(5000):
        writer.submit(RequestRecord(agent=f"a{i}"))
        if i == 2500:
            writer.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_killed_parent_leaves_a_consistent_store_and_no_child(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    proc = subprocess.run(
        [sys.executable, "-c", PARENT, str(db)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL
    child = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 20
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the store process outlived its parent"
    with AuditStore(db) as store:
        assert store.counts()["requests"] >= 2501  # flushed before the kill
        assert store.verify().ok  # whole batches only


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux only")
def test_the_child_runs_at_idle_priority(tmp_path: Path) -> None:
    """Background work: it takes the CPU the server leaves (docs/audit.md)."""
    child = StoreProcess(tmp_path / "a.db")
    try:
        child.write_batch([RequestRecord()])  # answered: the child has set itself up
        assert os.sched_getscheduler(child._process.pid) == os.SCHED_IDLE
    finally:
        child.close()
