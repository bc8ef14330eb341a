"""The ``simulated`` backend: the in-memory filesystem and restricted shell of
``evals/scheming`` behind the :class:`Sandbox` seam (the fallback where no real sandbox can
run). Commands run in a worker thread, so a slow one never blocks the event loop; the
shell's regular expressions carry their own time limit."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Mapping

from labelgate.evals.sandbox.base import ExecResult, Sandbox, SandboxLimits
from labelgate.evals.scheming.shell import Shell
from labelgate.evals.scheming.vfs import DENIED, IS_DIR, VFS, FsError, HostSpec, norm


class SimulatedSandbox(Sandbox):
    name = "simulated"

    def __init__(
        self,
        hosts: Mapping[str, HostSpec],
        host: str,
        cwd: str = "/",
        *,
        user: str = "agent",
        limits: SandboxLimits | None = None,
    ) -> None:
        super().__init__(hosts, host, cwd, user=user, limits=limits)
        self.vfs = VFS.from_specs(self.hosts, user)
        self.sh = Shell(self.vfs, host, cwd)
        self._lock = asyncio.Lock()  # one command at a time, as in a terminal

    async def setup(self) -> None:
        return None

    async def cleanup(self) -> None:
        return None

    async def exec(
        self,
        cmd: list[str],
        *,
        input: str | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        host: str | None = None,
    ) -> ExecResult:
        line = cmd[2] if len(cmd) == 3 and cmd[1] in {"-c", "-lc"} else shlex.join(cmd)
        shell = Shell(self.vfs, host or self.host, cwd or self.sh.cwd)
        async with self._lock:
            out = await asyncio.to_thread(shell.run, line)
        return ExecResult(0, out)

    async def shell(self, command: str) -> str:
        async with self._lock:
            return await asyncio.to_thread(self.sh.run, command)

    async def read_file(self, path: str, *, host: str | None = None) -> str:
        try:
            return self.vfs.read(host or self.host, norm(path, self.sh.cwd))
        except FsError as exc:
            kind = {DENIED: PermissionError, IS_DIR: IsADirectoryError}.get(exc.reason)
            raise (kind or FileNotFoundError)(str(exc)) from None

    async def write_file(self, path: str, contents: str, *, host: str | None = None) -> None:
        self.vfs.install(host or self.host, norm(path, self.sh.cwd), contents, owner=self.user)

    async def list_dir(self, path: str, *, host: str | None = None) -> list[str]:
        h, p = host or self.host, norm(path, self.sh.cwd)
        node = self.vfs.get(h, p)
        if node is not None and node.kind != "dir":
            raise NotADirectoryError(p)
        return self.vfs.children(h, p)  # a missing folder lists as empty

    async def snapshot(self) -> VFS:
        return self.vfs
