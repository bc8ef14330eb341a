"""The ``bwrap`` backend: bubblewrap, a throwaway root per sample.

Each host of the world is a directory under the sample's temporary folder, bound as ``/``
of its sandbox; the host's ``/usr`` (bash, coreutils, python3, perl, sed, awk) and the
dynamic linker's files are bound read-only on top, the stand-ins for ``scp``/``rsync``/``ssh``
over ``/usr/local/bin``, and the other hosts at ``/net/<host>``. Every namespace is unshared
(no network; its own pids, hostname, IPC), the agent is uid 1000 (``agent``), and every
command runs as its own ``bwrap`` under ``prlimit`` (CPU seconds, address space, file size,
open files), with a wall-clock timeout that kills the whole sandbox and an output cut.
The working directory carries over between an agent's commands, as in a terminal.

Files the world says are root's belong to uid 65534 on disk when the runner is root (they
show as ``nobody`` inside and the agent cannot change them); a runner that is not root
cannot give files away, so they stay the agent's, mode 444. ``chattr`` needs a capability
no sandbox has: it fails as on a locked-down machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import selectors
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from labelgate.evals.sandbox.base import ExecResult, Sandbox, SandboxError, SandboxLimits
from labelgate.evals.sandbox.standins import copy_script, ssh_script
from labelgate.evals.scheming.vfs import VFS, FileSpec, Host, HostSpec, Node, norm

UID = 1000
_FD = "@REPORT_FD@"  # replaced by the descriptor the shell reports its directory on
OTHER_UID = 65534  # "root's" files, when the runner can give them away
_SYSTEM_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_ETC_BINDS = (
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/perl",
    "/etc/python3",
    "/etc/python3.11",
    "/etc/ssl",
)
_NOT_CAPTURED = {"usr", "proc", "dev", "sys", "etc", "net", "run", *_SYSTEM_LINKS}
_CAPTURE = r"""
import json, os, stat, sys
skip, extra = set(json.loads(sys.argv[1])), json.loads(sys.argv[2])
limit = int(sys.argv[3])
out = {}
def add(path, st):
    if stat.S_ISDIR(st.st_mode):
        out[path] = {"kind": "dir", "mode": st.st_mode & 0o7777, "uid": st.st_uid}
    elif stat.S_ISREG(st.st_mode):
        try:
            with open(path, "rb") as f:
                data = f.read(limit).decode("utf-8", "replace")
        except OSError:
            data = ""
        out[path] = {"kind": "file", "mode": st.st_mode & 0o7777, "uid": st.st_uid, "content": data}
roots = ["/" + n for n in sorted(os.listdir("/")) if n not in skip]
for root in roots:
    for top, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            p = os.path.join(top, name)
            try:
                add(p, os.stat(p))
            except OSError:
                pass
        try:
            add(top, os.stat(top))
        except OSError:
            pass
for p in extra:
    try:
        add(p, os.stat(p))
    except OSError:
        out.pop(p, None)
json.dump(out, sys.stdout)
"""


def _probe() -> tuple[bool, str]:
    exe = shutil.which("bwrap")
    if exe is None:
        return False, "bubblewrap is not installed (Debian: apt-get install bubblewrap)"
    with tempfile.TemporaryDirectory(prefix="labelgate-bwrap-probe-") as tmp:
        for name in _SYSTEM_LINKS:
            if os.path.islink(f"/{name}"):
                os.symlink(os.readlink(f"/{name}"), f"{tmp}/{name}")
        os.mkdir(f"{tmp}/tmp")
        argv = [exe, *_namespaces(), "--bind", tmp, "/", *_system_binds(), "/bin/sh", "-c", "id -u"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"bubblewrap cannot run here: {exc}"
    if done.returncode != 0 or done.stdout.strip() != str(UID):
        why = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        return False, f"bubblewrap cannot run here (user namespaces?): {why}"
    return True, ""


def _namespaces() -> list[str]:
    return [
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--uid",
        str(UID),
        "--gid",
        str(UID),
    ]


def _system_binds(*, proc: bool = True) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in _SYSTEM_LINKS:
        if os.path.isdir(f"/{name}") and not os.path.islink(f"/{name}"):
            args += ["--ro-bind", f"/{name}", f"/{name}"]
    for path in _ETC_BINDS:
        args += ["--ro-bind-try", path, path]
    args += ["--dev", "/dev"]
    if proc:
        args += ["--proc", "/proc"]
    return args


class BwrapSandbox(Sandbox):
    name = "bwrap"

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
        self.dir: Path | None = None
        self._lock = asyncio.Lock()
        self._root = os.geteuid() == 0

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return _probe()

    # ------------------------------------------------------------------ lifecycle
    async def setup(self) -> None:
        ok, why = _probe_cached()
        if not ok:
            raise SandboxError(why)
        await asyncio.to_thread(self._setup)

    def _setup(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="labelgate-sbx-"))
        os.chmod(self.dir, 0o700)
        for name, spec in self.hosts.items():
            self._make_host(name, spec)
        bin_dir = self.dir / "bin"
        bin_dir.mkdir()
        nested = [
            "--unshare-user",
            "--unshare-uts",
            "--unshare-ipc",
            "--die-with-parent",
            "--uid",
            str(UID),
            "--gid",
            str(UID),
            *_system_binds(proc=False),
            "--clearenv",
            *self._env_args(),
        ]
        scripts = {
            "scp": copy_script("scp"),
            "rsync": copy_script("rsync"),
            "ssh": ssh_script(nested),
        }
        for tool, text in scripts.items():
            (bin_dir / tool).write_text(text)
            (bin_dir / tool).chmod(0o755)

    def _make_host(self, name: str, spec: HostSpec) -> None:
        assert self.dir is not None
        root = self.dir / "hosts" / name
        root.mkdir(parents=True)
        for link in _SYSTEM_LINKS:
            if os.path.islink(f"/{link}"):
                os.symlink(os.readlink(f"/{link}"), root / link)
        etc = root / "etc"
        etc.mkdir()
        home = f"/home/{self.user}"
        (etc / "passwd").write_text(
            "root:x:0:0:root:/root:/bin/bash\n"
            f"{self.user}:x:{UID}:{UID}:{self.user}:{home}:/bin/bash\n"
            f"nobody:x:{OTHER_UID}:{OTHER_UID}:nobody:/nonexistent:/usr/sbin/nologin\n"
        )
        (etc / "group").write_text(f"root:x:0:\n{self.user}:x:{UID}:\nnogroup:x:{OTHER_UID}:\n")
        (etc / "hostname").write_text(name + "\n")
        (etc / "hosts").write_text(
            "127.0.0.1\tlocalhost\n"
            + "".join(f"10.0.0.{i + 10}\t{h}\n" for i, h in enumerate(self.hosts))
        )
        for d in ("tmp", "net", "root", "var/tmp", "usr", "dev", "proc"):
            (root / d).mkdir(parents=True, exist_ok=True)
        # mount points made now: bwrap cannot create them in folders that are not the agent's
        for other in self.hosts:
            if other != name:
                (root / "net" / other).mkdir()
        for path in _ETC_BINDS:
            if os.path.isdir(path):
                (root / path.lstrip("/")).mkdir()
            elif os.path.exists(path):
                (root / path.lstrip("/")).touch()
        (root / "tmp").chmod(0o1777)
        self._give_away(root / "net", root / "root", root / "etc")
        for path, owner in sorted(spec.dirs.items()):
            self._mkdirs(root, path, owner)
        self._mkdirs(root, home, self.user)
        for path, fs in sorted(spec.files.items()):
            f = fs if isinstance(fs, FileSpec) else FileSpec(content=fs)
            target = root / norm(path).lstrip("/")
            parent = os.path.dirname(norm(path))
            mine = parent.startswith((home, "/tmp"))
            self._mkdirs(root, parent, self.user if mine else "root")
            target.write_text(f.content)
            mode = int(f.mode, 8)
            if f.owner != self.user:
                if self._root:
                    self._give_away(target)
                else:
                    mode &= 0o555
            target.chmod(mode)

    def _mkdirs(self, root: Path, path: str, owner: str) -> None:
        current = root
        for part in norm(path).strip("/").split("/"):
            if not part:
                continue
            current = current / part
            if not current.exists():
                current.mkdir(mode=0o755)
                current.chmod(0o755)
                if owner != self.user:
                    self._give_away(current)

    def _give_away(self, *paths: Path) -> None:
        if self._root:
            for p in paths:
                os.chown(p, OTHER_UID, OTHER_UID)

    async def cleanup(self) -> None:
        if self.dir is not None:
            path, self.dir = self.dir, None
            await asyncio.to_thread(_remove_tree, path)

    # ------------------------------------------------------------------ running
    def _env_args(self) -> list[str]:
        home = f"/home/{self.user}"
        env = {
            "HOME": home,
            "USER": self.user,
            "LOGNAME": self.user,
            "SHELL": "/bin/bash",
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "LANG": "C.UTF-8",
            "TERM": "dumb",
        }
        return [a for k, v in env.items() for a in ("--setenv", k, v)]

    def _argv(self, host: str, cmd: list[str], cwd: str) -> list[str]:
        if self.dir is None:
            raise SandboxError("the sandbox is not set up (call setup first)")
        if host not in self.hosts:
            raise SandboxError(f"unknown host {host!r}")
        lim = self.limits
        argv = [
            "prlimit",
            f"--cpu={lim.cpu_s}",
            f"--as={lim.memory_mb << 20}",
            f"--fsize={lim.file_mb << 20}",
            f"--nofile={lim.open_files}",
            "--core=0",
            "--",
            "bwrap",
            *_namespaces(),
            "--hostname",
            host,
            "--bind",
            str(self.dir / "hosts" / host),
            "/",
            *_system_binds(),
            "--ro-bind",
            str(self.dir / "bin"),
            "/usr/local/bin",
        ]
        if host == self.host:
            for other in self.hosts:
                if other != host:
                    argv += ["--bind", str(self.dir / "hosts" / other), f"/net/{other}"]
        argv += ["--clearenv", *self._env_args(), "--setenv", "HOSTNAME", host]
        argv += ["--chdir", cwd, "--", *cmd]
        return argv

    async def exec(
        self,
        cmd: list[str],
        *,
        input: str | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        host: str | None = None,
    ) -> ExecResult:
        argv = self._argv(host or self.host, cmd, cwd or "/")
        result, _ = await asyncio.to_thread(
            _run, argv, input, timeout or self.limits.timeout_s, self.limits, None
        )
        return result

    async def shell(self, command: str) -> str:
        async with self._lock:
            script = (
                "exec 2>&1\n"
                f"cd -- {shlex.quote(self.cwd)} 2>/dev/null || cd\n"
                f"trap 'pwd >&{_FD}' EXIT\n"
                f"{command}"
            )
            argv = self._argv(self.host, ["/bin/bash", "--noprofile", "--norc", "-c", script], "/")
            result, cwd = await asyncio.to_thread(
                _run, argv, None, self.limits.timeout_s, self.limits, True
            )
            if cwd and cwd.startswith("/"):
                self.cwd = cwd
        text = result.stdout + result.stderr
        if result.truncated:
            text += f"\n[output truncated: {self.limits.output_chars} characters shown]\n"
        if result.timed_out:
            text += f"\n[command timed out after {self.limits.timeout_s:g} s and was stopped]\n"
        return text

    async def read_file(self, path: str, *, host: str | None = None) -> str:
        result = await self._file_op(["cat", "--", path], host)
        return result.stdout

    async def write_file(self, path: str, contents: str, *, host: str | None = None) -> None:
        argv = self._argv(host or self.host, ["/bin/sh", "-c", 'cat > "$1"', "sh", path], "/")
        result, _ = await asyncio.to_thread(
            _run, argv, contents, self.limits.timeout_s, self.limits, None
        )
        _raise_for(result, path)

    async def list_dir(self, path: str, *, host: str | None = None) -> list[str]:
        code = "import json,os,sys; print(json.dumps(sorted(os.listdir(sys.argv[1]))))"
        result = await self._file_op(["/usr/bin/python3", "-c", code, path], host)
        names: list[str] = json.loads(result.stdout)
        return names

    async def _file_op(self, cmd: list[str], host: str | None) -> ExecResult:
        argv = self._argv(host or self.host, cmd, f"/home/{self.user}")
        big = dataclasses.replace(self.limits, output_chars=4 << 20)
        result, _ = await asyncio.to_thread(_run, argv, None, self.limits.timeout_s, big, None)
        _raise_for(result, cmd[-1])
        return result

    async def snapshot(self) -> VFS:
        vfs = VFS(self.user)
        for name, spec in self.hosts.items():
            extra = sorted({norm(p) for p in spec.files} | {norm(p) for p in spec.dirs})
            cmd = [
                "/usr/bin/python3",
                "-c",
                _CAPTURE,
                json.dumps(sorted(_NOT_CAPTURED)),
                json.dumps(extra),
                str(1 << 20),
            ]
            argv = self._argv(name, cmd, "/")
            big = dataclasses.replace(self.limits, output_chars=64 << 20)
            result, _ = await asyncio.to_thread(_run, argv, None, 120.0, big, None)
            if result.returncode != 0 or result.truncated:
                raise SandboxError(f"could not read the final state of {name}: {result.stderr}")
            host = Host(name)
            for path, e in sorted(json.loads(result.stdout).items()):
                owner = self.user if e["uid"] == UID else "root"
                host.nodes[path] = Node(e["kind"], e.get("content", ""), e["mode"] & 0o777, owner)
            host.nodes.setdefault("/", Node("dir", mode=0o755))
            vfs.hosts[name] = host
        return vfs


def _raise_for(result: ExecResult, path: str) -> None:
    if result.success:
        return
    text = (result.stderr or result.stdout).strip()
    if "Permission denied" in text:
        raise PermissionError(text)
    if "Not a directory" in text:
        raise NotADirectoryError(text)
    if "Is a directory" in text:
        raise IsADirectoryError(text)
    raise FileNotFoundError(text or f"{path}: exit status {result.returncode}")


_probe_cache: tuple[bool, str] | None = None


def _probe_cached() -> tuple[bool, str]:
    global _probe_cache
    if _probe_cache is None:
        _probe_cache = _probe()
    return _probe_cache


def _remove_tree(path: Path) -> None:
    # the agent may have taken the write bit off its folders; everything here is ours
    for top, dirs, _ in os.walk(path):
        for d in dirs:
            p = os.path.join(top, d)
            if not os.path.islink(p):
                os.chmod(p, 0o700)
    shutil.rmtree(path, ignore_errors=True)


def _run(
    argv: list[str],
    stdin: str | None,
    timeout: float,
    limits: SandboxLimits,
    report: bool | None,
) -> tuple[ExecResult, str | None]:
    """Run argv, reading stdout and stderr up to the output limit (draining past it up to
    ``drain_bytes``, then killing), killing the process group at the deadline. With
    ``report``, a pipe's descriptor replaces the first ``_FD`` placeholder in the argv;
    returns what the child wrote to it."""
    r_fd = w_fd = None
    pass_fds: tuple[int, ...] = ()
    if report:
        r_fd, w_fd = os.pipe()
        pass_fds = (w_fd,)
        i = next(i for i, a in enumerate(argv) if _FD in a)
        argv = [*argv[:i], argv[i].replace(_FD, str(w_fd), 1), *argv[i + 1 :]]
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
            start_new_session=True,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
        )
    finally:
        if w_fd is not None:
            os.close(w_fd)
    deadline = time.monotonic() + timeout
    keep = limits.output_chars * 4  # bytes: enough for output_chars characters of UTF-8
    bufs = {"out": bytearray(), "err": bytearray()}
    total = 0
    timed_out = killed = False
    assert proc.stdout is not None and proc.stderr is not None
    if stdin is not None and proc.stdin is not None:
        try:
            proc.stdin.write(stdin.encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(proc.stderr, selectors.EVENT_READ, "err")
    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _ in sel.select(left):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                total += len(chunk)
                buf = bufs[key.data]
                if len(buf) < keep:
                    buf += chunk[: keep - len(buf)]
            if total > limits.drain_bytes:
                killed = True
                break
        if timed_out or killed:
            _kill(proc)
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(proc)
            proc.wait()
    finally:
        sel.close()
        proc.stdout.close()
        proc.stderr.close()
    reported = None
    if r_fd is not None:
        with os.fdopen(r_fd, "rb") as f:
            reported = f.read(65536).decode("utf-8", "replace").strip() if not timed_out else None
    out = bufs["out"].decode("utf-8", "replace")
    err = bufs["err"].decode("utf-8", "replace")
    truncated = killed or len(out) + len(err) > limits.output_chars or total > 2 * keep
    if len(out) > limits.output_chars:
        out, err = out[: limits.output_chars], ""
    elif len(out) + len(err) > limits.output_chars:
        err = err[: limits.output_chars - len(out)]
    code = proc.returncode if proc.returncode is not None else -9
    if timed_out:
        code = 124
    return ExecResult(code, out, err, truncated=truncated, timed_out=timed_out), reported


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
