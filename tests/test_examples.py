"""docs/examples/*.py run as a user would run them, against a guarded proxy (fake upstream)."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from proxy_fixtures import *  # noqa: F403
from proxy_fixtures import Guarded, passthrough_config

from guard.audit.store import AuditStore

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


# --------------------------------------------------------------------------- quickstart

REPO = EXAMPLES.parent.parent
QUICKSTART = REPO / "docs" / "quickstart.md"
# `labelgate` with the demo registered whether or not the entry point is installed yet
LAUNCHER = (
    "import sys; from guard.cli import main; from proxy.demo_cli import demo; "
    "main.add_command(demo); sys.exit(main())"
)
# The documented edit of section 3, as the test makes it (checked against the doc below).
MAILER_BEFORE = """  mailer:
    description: Sends email for its user; cleared for internal data, not for HR records.
    clearance: {confidentiality: internal}
"""
HR_RULE_BEFORE = '    recipient: "re:(?!hr-agent$).*"\n'


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)


def _commands() -> list[str]:
    lines = [
        line.strip()
        for block in _blocks(QUICKSTART.read_text(), "sh")
        for line in block.splitlines()
    ]
    return [line for line in lines if line and not line.startswith("#")]


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    args = shlex.split(command)
    if args[0] == "labelgate":
        args = [sys.executable, "-c", LAUNCHER, *args[1:]]
        if args[3] == "demo":  # the full run on the local model is test_demo's slow test
            args.append("--quick")
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # about 20 s: five CLI processes, two quick demos
def test_quickstart_commands_run_as_documented(tmp_path: Path) -> None:
    commands = _commands()
    assert commands[0] == "python -m pip install -e '.[local]' && labelgate demo"
    commands[0] = "labelgate demo"  # installed already: run what the install is for
    shutil.copytree(REPO / "policies", tmp_path / "policies")
    mailer, rule = _blocks(QUICKSTART.read_text(), "yaml")
    outputs: dict[str, str] = {}
    for command in commands:
        done = _run(command, tmp_path)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        outputs[command] = done.stdout
        if command.startswith("cp "):  # the edit the doc describes in prose and YAML
            policy = tmp_path / "my-policy.yaml"
            text = policy.read_text()
            assert MAILER_BEFORE in text and HR_RULE_BEFORE in text
            policy.write_text(text.replace(MAILER_BEFORE, mailer).replace(HR_RULE_BEFORE, rule))
    assert "DENY" in outputs["labelgate demo"] and "REDACT" in outputs["labelgate demo"]
    assert "ok" in outputs["labelgate policy validate my-policy.yaml"]
    edited = outputs["labelgate demo --policy my-policy.yaml --no-evals"]
    step_d = edited[edited.index("d. mailer") :]
    assert "ALLOW response" in step_d and "REDACT" not in step_d
    assert "DENY" in edited  # the injected email is still refused
