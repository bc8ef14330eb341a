"""The `labelgate` command: every plugin loads, and --help stays light."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from labelgate.guard.cli import main

COMMANDS = {"approvals", "audit", "eval", "keys", "policy", "serve", "trace", "ui"}


def test_every_subcommand_is_listed_and_loads() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "unavailable" not in result.output
    for name in COMMANDS:
        assert name in result.output
        assert CliRunner().invoke(main, [name, "--help"]).exit_code == 0


def test_help_does_not_import_the_heavy_parts() -> None:
    code = (
        "import sys; from click.testing import CliRunner; from guard.cli import main; "
        "CliRunner().invoke(main, ['--help']); "
        "print(sorted(m for m in ('litellm', 'pydantic', 'starlette', 'sqlite_utils', 'numpy') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_broken_plugin_gives_one_line_not_a_traceback(monkeypatch) -> None:
    from labelgate.guard import cli

    class Broken:
        name = "broken"

        def load(self) -> object:
            raise ImportError("no module named nowhere")

    monkeypatch.setattr(cli.PluginGroup, "_plugins", lambda self: {"broken": Broken()})
    result = CliRunner().invoke(main, ["broken"])
    assert result.exit_code == 1
    assert "the 'broken' command could not be loaded: ImportError" in result.output
