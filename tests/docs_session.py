"""Run one doc's commands in order, in a scratch copy of the repository, as a reader would."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from docs_commands import REPO, Block, Command, Directive, parse_blocks, unmatched_lines

SHARED = REPO.parent / "shared"
Hook = Callable[["Session"], None]
# `labelgate` exactly as the console script runs it, importing this checkout
LAUNCHER = "import sys\nfrom guard.cli import main\nsys.exit(main())\n"


class DocCommandFailed(AssertionError):
    """A documented command did not do what its doc says."""


@dataclass
class Outcome:
    where: str
    command: str
    result: str  # "ran", "ran as ...", "skip: reason", "slow: ..."


@dataclass
class Session:
    doc: Path
    tmp: Path
    full: bool  # run the slow commands for real (the slow-marked session)
    hooks: dict[str, Hook] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    ports: dict[str, str] = field(default_factory=dict)  # documented port -> the real one
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = self.tmp / "repo"  # the reader's clone: cwd of every command
        self.root.mkdir(parents=True)
        for part in ("policies", "docs"):
            shutil.copytree(REPO / part, self.root / part)
        if SHARED.is_dir():
            (self.tmp / "shared").symlink_to(SHARED)  # ../shared from the clone
        bin_dir = self.tmp / "bin"
        bin_dir.mkdir()
        launcher = bin_dir / "labelgate"
        launcher.write_text(f"#!{sys.executable}\n{LAUNCHER}")
        launcher.chmod(0o755)
        self.env = _environment(bin_dir)

    # ------------------------------------------------------------------ the run

    def run(self) -> list[Outcome]:
        self.blocks = parse_blocks(self.doc)
        try:
            for block in self.blocks:
                for command in block.commands:
                    started = time.monotonic()
                    result = self._one(command)
                    if result.startswith("ran"):  # the report says what each command costs
                        result += f" [{time.monotonic() - started:.1f} s]"
                    self.outcomes.append(Outcome(block.where, command.text, result))
        finally:
            self.stop_servers()
        return self.outcomes

    def _one(self, command: Command) -> str:
        skip = command.first("skip")
        if skip:
            return f"skip: {skip.args[0]}"
        if command.first("shared") and not SHARED.is_dir():
            return f"skip: needs {SHARED} (absent here)"
        text, how = self._resolve(command)
        if text is None:
            return how
        for hook in command.get("hook"):
            self.hooks[hook.args[0]](self)
        background = command.first("background")
        if background:
            self._start_server(text, background)
        else:
            self._check(command, text, self.execute(text, timeout=1800 if self.full else 180))
        return how

    def _resolve(self, command: Command) -> tuple[str | None, str]:
        """What to run for this command in this session, and how to report it."""
        text, how = command.text, "ran"
        slow = command.first("slow")
        if slow and not self.full:
            if "quick" not in slow.options:
                return None, "slow: runs in the full session"
            quick = slow.options["quick"]  # a whole command: the doc's own subs do not apply
            return self._ported(quick), f"ran as {quick!r} (quick)"
        for sub in command.get("sub"):
            if sub.args[0] in text:
                text = text.replace(sub.args[0], sub.args[1])
                how = f"ran as {text!r} ({sub.args[2]})"
        for let in command.get("let"):
            text = re.sub(rf"\b{re.escape(let.args[0])}\b", shlex.quote(self._let(let)), text)
        return self._ported(text), how

    def _let(self, let: Directive) -> str:
        done = self.execute(self._ported(let.args[1]), timeout=120)
        value = done.stdout.strip().splitlines()[:1]
        if done.returncode or not value:
            raise DocCommandFailed(f"let {let.args[0]}: {let.args[1]!r} gave nothing\n{done}")
        return value[0].strip()

    def _ported(self, text: str) -> str:
        for documented, real in self.ports.items():
            text = re.sub(rf"(?<=:){documented}\b|(?<=--port ){documented}\b", real, text)
        return text

    def execute(self, text: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-o", "pipefail", "-c", text],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def _check(self, command: Command, text: str, done: subprocess.CompletedProcess[str]) -> None:
        output = done.stdout + "\n" + done.stderr
        status = command.first("exit")
        want = int(status.args[0]) if status else 0
        context = f"{self.doc.name}:{command.line}: $ {text}\n--- output:\n{output[-6000:]}"
        if done.returncode != want:
            raise DocCommandFailed(f"exit status {done.returncode}, not {want}\n{context}")
        missing = unmatched_lines(command.expected, output)
        missing += [e.args[0] for e in command.get("expect") if e.args[0] not in output]
        if missing:
            raise DocCommandFailed(f"the doc shows {missing} but the output has not\n{context}")

    # ------------------------------------------------------------------ servers

    def _start_server(self, text: str, directive: Directive) -> None:
        documented = directive.options.get("port")
        args = shlex.split(text, comments=True)
        if documented:
            port = str(_free_port())
            self.ports[documented] = port
            if "--port" in args:
                args[args.index("--port") + 1] = port
            else:
                args += ["--port", port]
        log = (self.tmp / f"server-{len(self.servers)}.log").open("wb")
        server = subprocess.Popen(
            args, cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.servers.append(server)
        self._wait_ready(server, directive, Path(log.name))

    def _wait_ready(self, server: subprocess.Popen[bytes], directive: Directive, log: Path) -> None:
        port = self.ports.get(directive.options.get("port", ""), "")
        url = f"http://127.0.0.1:{port}{directive.options.get('ready', '/')}"
        deadline = time.monotonic() + (300 if self.full else 60)
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise DocCommandFailed(f"the server exited: {log.read_text()[-4000:]}")
            try:
                if httpx.get(url, timeout=2, follow_redirects=True).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise DocCommandFailed(f"{url} not ready in time: {log.read_text()[-4000:]}")

    def stop_servers(self) -> None:
        for server in self.servers:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGINT)  # its own group: the server we started
                try:
                    server.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(server.pid, signal.SIGKILL)
                    server.wait()
        self.servers.clear()


def _environment(bin_dir: Path) -> dict[str, str]:
    # the reader's own settings must not leak in: the state is the scratch clone's .labelgate
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELGATE_")}
    python_path = [str(REPO), *filter(None, [env.get("PYTHONPATH")])]
    return env | {
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(python_path),
        "COLUMNS": "200",  # rich wraps at the terminal width: keep lines whole to match them
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no price-map fetch from the network
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
