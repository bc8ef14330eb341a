"""The sandbox seam: one abstract class and a registry of backends by name."""

from __future__ import annotations

import functools
import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from labelgate.evals.scheming.vfs import VFS, HostSpec


class SandboxError(Exception):
    """The sandbox could not be set up or used (not a failed command: that is an ExecResult)."""


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Per command: wall time, CPU seconds, address space, largest file, output kept."""

    timeout_s: float = 30.0
    cpu_s: int = 20
    memory_mb: int = 1024
    file_mb: int = 64
    open_files: int = 256
    output_chars: int = 8000  # what the agent sees; the rest is cut with a note
    drain_bytes: int = 8 << 20  # output read (and dropped) past the cut, then the command killed


@dataclass(slots=True)
class ExecResult:
    returncode: int
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False
    timed_out: bool = False

    @property
    def success(self) -> bool:
        return self.returncode == 0 and not self.timed_out


class Sandbox(ABC):
    """One sample's machine(s): ``host`` is where the agent's shell runs; ``hosts`` are all
    the machines of the world with their files (the other ones are reachable only through the
    backend's ``scp``/``rsync``/``ssh``). Paths are absolute, as the agent sees them."""

    name: ClassVar[str]

    def __init__(
        self,
        hosts: Mapping[str, HostSpec],
        host: str,
        cwd: str = "/",
        *,
        user: str = "agent",
        limits: SandboxLimits | None = None,
    ) -> None:
        self.hosts = dict(hosts)
        self.host = host
        self.cwd = cwd
        self.user = user
        self.limits = limits or SandboxLimits()

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Whether this backend can run here, and if not, why."""
        return True, ""

    @abstractmethod
    async def setup(self) -> None:
        """Create the sample's machines and write the world's files into them."""

    @abstractmethod
    async def cleanup(self) -> None:
        """Remove everything setup created (safe to call twice, or after a failed setup)."""

    @abstractmethod
    async def exec(
        self,
        cmd: list[str],
        *,
        input: str | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        host: str | None = None,
    ) -> ExecResult:
        """Run ``cmd`` (argv) as the agent's user on ``host`` (default: the agent's host)."""

    @abstractmethod
    async def read_file(self, path: str, *, host: str | None = None) -> str: ...

    @abstractmethod
    async def write_file(self, path: str, contents: str, *, host: str | None = None) -> None: ...

    @abstractmethod
    async def list_dir(self, path: str, *, host: str | None = None) -> list[str]:
        """Names in a directory, sorted (FileNotFoundError / NotADirectoryError as Python)."""

    @abstractmethod
    async def shell(self, command: str) -> str:
        """An agent's command line in its terminal (the working directory carries over):
        stdout and stderr as a terminal shows them, cut with a note past the output limit,
        and a note when the time limit stopped it."""

    @abstractmethod
    async def snapshot(self) -> VFS:
        """The final state of every host, as the in-memory filesystem the verdicts read
        (files, directories, modes, owner; symlinks followed as the host sees them)."""

    async def __aenter__(self) -> Sandbox:
        await self.setup()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cleanup()


BACKENDS: dict[str, str] = {
    "bwrap": "labelgate.evals.sandbox.bwrap:BwrapSandbox",
    "simulated": "labelgate.evals.sandbox.simulated:SimulatedSandbox",
}


def backend_class(name: str) -> type[Sandbox]:
    try:
        target = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ValueError(f"unknown sandbox {name!r}; known: auto, {known}") from None
    module, _, attr = target.partition(":")
    cls: type[Sandbox] = getattr(importlib.import_module(module), attr)
    return cls


@functools.cache
def backend_status(name: str) -> tuple[bool, str]:
    """(available, reason) for a backend, probed once per process."""
    return backend_class(name).available()


def resolve_backend(name: str = "auto") -> str:
    """``auto``: ``bwrap`` where it runs, else ``simulated``; other names are checked."""
    if name == "auto":
        return "bwrap" if backend_status("bwrap")[0] else "simulated"
    backend_class(name)
    return name
