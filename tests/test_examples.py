"""docs/examples/*.py run as a user would run them, against a guarded proxy (fake upstream)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from proxy_fixtures import *  # noqa: F403
from proxy_fixtures import Guarded, passthrough_config

from labelgate.guard.audit.store import AuditStore

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


@pytest.mark.parametrize(
    "script",
    [
        "openai_agents.py",
        pytest.param(
            "langchain_agents.py",
            marks=[
                pytest.mark.slow,  # importing langchain takes seconds
                pytest.mark.skipif(
                    importlib.util.find_spec("langchain_openai") is None,
                    reason="needs langchain-openai (pip install langchain-openai)",
                ),
            ],
        ),
    ],
)
def test_agents_example_goes_through_the_guard(
    script: str, start_guarded: Callable[..., Guarded], fake_url: str
) -> None:
    proxy = start_guarded(passthrough_config(fake_url))
    args = ["--base-url", proxy.url, "--model", "fake-chat"]
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    researcher, writer = done.stdout.split("writer:")
    # the fetched page is untrusted, and the researcher's answer says so
    assert "label:     public / untrusted" in researcher
    assert "tool:fetch_url" in researcher
    assert "answer:    echo:" in writer
    proxy.stop()
    with AuditStore(proxy.audit_path) as store:
        agents = {r["agent"] for r in store.db.query("select agent from requests")}
    assert agents == {"researcher", "writer"}
