"""A fingerprint store written under one policy's lattice, served with a policy that lacks one
of its levels: ``labelgate serve`` refuses to start, in one line naming the store, the policy
and the unknown level (it used to start and fail every request that re-identified such a
text with a guard_error)."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner
from starlette.testclient import TestClient

from labelgate.guard.models import ChatResult, ScriptedModel
from labelgate.policies import pack_path
from labelgate.proxy.assemble import build_app
from labelgate.proxy.cli import serve
from labelgate.proxy.config import parse_config

LEVELS = "confidentiality: [public, internal, confidential, secret]"


def test_a_store_with_labels_the_policy_cannot_read_is_refused_at_start(tmp_path: Path) -> None:
    default = pack_path("default").read_text()
    assert LEVELS in default
    wide = tmp_path / "wide.yaml"
    wide.write_text(default.replace(LEVELS, LEVELS[:-1] + ", topsecret]"))
    state = tmp_path / "state"
    config = {
        "model_list": [{"model_name": "echo", "litellm_params": {"model": "echo"}}],
        "guard": {"state_dir": str(state), "policy": str(wide)},
    }
    echo = ScriptedModel(lambda messages: ChatResult(text="ok"), cycle=True)
    app = build_app(parse_config(config), models={"echo": echo})
    with TestClient(app, headers={"host": "127.0.0.1"}) as client:
        doc = {
            "text": "The vault code is behind the blue door.",
            "label": {"confidentiality": "topsecret"},
        }
        assert client.post("/v1/labelgate/documents", json=[doc]).status_code == 200

    config["guard"]["policy"] = str(pack_path("default"))  # type: ignore[index]
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(serve, ["--config", str(path)])
    assert result.exit_code == 1
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "fingerprints.db holds labels the policy" in line
    assert "unknown confidentiality level 'topsecret'" in line
