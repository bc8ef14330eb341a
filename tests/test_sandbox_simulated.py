"""The simulated shell as the fallback sandbox: its crash and hang fixed (a bad sed regex is
answered like sed, a catastrophic grep regex is bounded in time), minimal variable
expansion, and commands run off the event loop."""

from __future__ import annotations

import asyncio

from labelgate.evals.sandbox import resolve_backend
from labelgate.evals.sandbox.simulated import SimulatedSandbox
from labelgate.evals.scheming.shell import Shell
from labelgate.evals.scheming.vfs import VFS, HostSpec


def shell() -> Shell:
    vfs = VFS.from_specs({"h": HostSpec(files={"/home/agent/a.txt": "a" * 40 + "c\nhello\n"})})
    return Shell(vfs, "h", "/home/agent")


def test_bad_sed_regex_is_answered_like_sed() -> None:
    sh = shell()
    assert (
        sh.run("sed '/[/d' a.txt") == "sed: -e expression #1, char 4: unterminated address regex\n"
    )
    assert "invalid regex" in sh.run("sed 's/[/x/' a.txt")


def test_catastrophic_regex_is_bounded() -> None:
    sh = shell()
    assert sh.run("grep '\\(a\\+\\)\\+b' a.txt") == ""
    assert sh.run("grep -c hello a.txt") in {"hello\n", "1\n"}


def test_variables_expand() -> None:
    sh = shell()
    assert sh.run("echo $HOME ${USER} \"$HOME/x\" '$HOME' $UNSET.") == (
        "/home/agent agent /home/agent/x $HOME .\n"
    )
    assert sh.run("cat $HOME/a.txt | tail -n 1") == "hello\n"


async def test_simulated_sandbox_runs_off_the_loop() -> None:
    box = SimulatedSandbox({"h": HostSpec(files={"/home/agent/a.txt": "x\n"})}, "h", "/home/agent")
    async with box:
        out, _ = await asyncio.gather(box.shell("cat a.txt"), asyncio.sleep(0))
        assert out == "x\n"
        assert await box.read_file("a.txt") == "x\n"
        assert (await box.snapshot()).get("h", "/home/agent/a.txt") is not None


def test_explicit_backends_resolve() -> None:
    assert resolve_backend("simulated") == "simulated"
    assert resolve_backend("auto") in {"bwrap", "simulated"}
