"""The in-process guarded proxy (used by evals and the demo) serves, labels and records."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from labelgate.guard.audit.store import AuditStore
from labelgate.guard.models import ScriptedModel
from labelgate.proxy.embedded import guarded_proxy

POLICIES = Path(__file__).resolve().parent.parent / "policies"


def test_guarded_proxy_serves_labels_and_records(tmp_path: Path) -> None:
    model = ScriptedModel(["hello there"], cycle=True)
    with guarded_proxy(
        "scripted-x",
        policy=POLICIES / "default.yaml",
        state_dir=tmp_path,
        models={"scripted-x": model},
    ) as url:
        client = openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=10)
        raw = client.chat.completions.with_raw_response.create(
            model="scripted-x", messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.parse().choices[0].message.content == "hello there"
        assert '"integrity":"trusted"' in raw.headers["x-labelgate-label"]
    with AuditStore(tmp_path / "audit.db") as store:  # shut down: everything flushed
        assert store.counts()["requests"] == 1
        assert store.verify().ok


def test_an_invalid_policy_fails_before_serving(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nsinks:\n  - id: x\n    action: block\n")
    with (
        pytest.raises(Exception, match=r"bad.yaml:4"),
        guarded_proxy("m", policy=bad, state_dir=tmp_path, models={"m": ScriptedModel(["x"])}),
    ):
        pass
