"""An in-memory filesystem over several hosts: files, directories, permission bits, an
owner per node and the immutable flag of ``chattr +i``.

It is the world a scheming agent acts in and the final state scorers inspect. Nothing here
touches the real filesystem. Permissions follow Unix closely enough for the commands the
restricted shell offers: read needs ``r`` on the file, writing needs ``w`` on the file (or on
the directory to create), removing or renaming needs ``w`` on the parent directory, and an
immutable node refuses every change, whoever asks.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

Kind = Literal["file", "dir"]


class FsError(Exception):
    """A failed filesystem operation; the message is the errno text a shell would print."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


NOT_FOUND = "No such file or directory"
DENIED = "Permission denied"
NOT_PERMITTED = "Operation not permitted"
IS_DIR = "Is a directory"
NOT_DIR = "Not a directory"
NOT_EMPTY = "Directory not empty"


@dataclass(slots=True)
class Node:
    kind: Kind
    content: str = ""
    mode: int = 0o644
    owner: str = "root"
    immutable: bool = False

    def snapshot(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "content": self.content,
            "mode": oct(self.mode),
            "owner": self.owner,
            "immutable": self.immutable,
        }


class FileSpec(BaseModel):
    """A file as scenarios declare it: content plus optional mode and owner."""

    model_config = {"extra": "forbid"}

    content: str = ""
    mode: str = "644"
    owner: str = "agent"


class HostSpec(BaseModel):
    model_config = {"extra": "forbid"}

    files: dict[str, FileSpec | str] = Field(default_factory=dict)
    dirs: dict[str, str] = Field(default_factory=dict)  # path -> owner, for empty/owned dirs


def norm(path: str, cwd: str = "/") -> str:
    """An absolute, normalised path ('..' cannot climb above '/')."""
    joined = posixpath.join(cwd, path) if not path.startswith("/") else path
    out = posixpath.normpath(joined)
    return "/" + out.lstrip("/") if out != "/" else "/"


@dataclass(slots=True)
class Host:
    name: str
    nodes: dict[str, Node] = field(default_factory=lambda: {"/": Node("dir", mode=0o755)})


class VFS:
    """Hosts of path -> Node maps. ``user`` is who the agent runs as (never root)."""

    def __init__(self, user: str = "agent") -> None:
        self.user = user
        self.hosts: dict[str, Host] = {}

    # ------------------------------------------------------------------ building
    @classmethod
    def from_specs(cls, hosts: dict[str, HostSpec], user: str = "agent") -> VFS:
        vfs = cls(user)
        for name in sorted(hosts):
            spec = hosts[name]
            vfs.hosts[name] = Host(name)
            vfs.install_dir(name, "/tmp", "root")
            vfs.hosts[name].nodes["/tmp"].mode = 0o777  # world-writable, as everywhere
            for path, owner in sorted(spec.dirs.items()):
                vfs.install_dir(name, path, owner)
            for path, fs in sorted(spec.files.items()):
                f = fs if isinstance(fs, FileSpec) else FileSpec(content=fs)
                vfs.install(name, path, f.content, mode=int(f.mode, 8), owner=f.owner)
        return vfs

    def install_dir(self, host: str, path: str, owner: str = "agent") -> None:
        """Create a directory and its parents (setup only: no permission checks)."""
        nodes = self.hosts.setdefault(host, Host(host)).nodes
        parts = norm(path).strip("/").split("/")
        for i in range(1, len(parts) + 1):
            p = "/" + "/".join(parts[:i])
            if p not in nodes:
                nodes[p] = Node("dir", mode=0o755, owner=owner)

    def install(
        self, host: str, path: str, content: str, *, mode: int = 0o644, owner: str = "agent"
    ) -> None:
        path = norm(path)
        parent = posixpath.dirname(path)
        if parent not in self.hosts.setdefault(host, Host(host)).nodes:
            # A root-owned file must not make its folder root's: folders are the user's
            # under home and /tmp, root's elsewhere, unless a scenario declares them.
            mine = parent.startswith((f"/home/{self.user}", "/tmp"))
            self.install_dir(host, parent, self.user if mine else "root")
        self.hosts[host].nodes[path] = Node("file", content, mode, owner)

    # ------------------------------------------------------------------ lookup
    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise FsError(name, "Could not resolve hostname: Name or service not known") from None

    def get(self, host: str, path: str) -> Node | None:
        return self.host(host).nodes.get(norm(path))

    def need(self, host: str, path: str) -> Node:
        node = self.get(host, path)
        if node is None:
            raise FsError(path, NOT_FOUND)
        return node

    def children(self, host: str, path: str) -> list[str]:
        path = norm(path)
        prefix = path.rstrip("/") + "/"
        nodes = self.host(host).nodes
        return sorted(
            p[len(prefix) :] for p in nodes if p.startswith(prefix) and "/" not in p[len(prefix) :]
        )

    def walk(self, host: str, path: str) -> list[str]:
        """``path`` and everything below it, sorted."""
        path = norm(path)
        prefix = path.rstrip("/") + "/"
        nodes = self.host(host).nodes
        return sorted(p for p in nodes if p == path or p.startswith(prefix))

    # ------------------------------------------------------------------ permissions
    def _bits(self, node: Node) -> int:
        return (node.mode >> 6) & 7 if node.owner == self.user else node.mode & 7

    def can(self, node: Node, what: str) -> bool:
        bit = {"r": 4, "w": 2, "x": 1}[what]
        return bool(self._bits(node) & bit)

    def _parent_writable(self, host: str, path: str) -> Node:
        parent = self.get(host, posixpath.dirname(norm(path)))
        if parent is None:
            raise FsError(path, NOT_FOUND)
        if parent.kind != "dir":
            raise FsError(path, NOT_DIR)
        if parent.immutable:
            raise FsError(path, NOT_PERMITTED)
        if not self.can(parent, "w"):
            raise FsError(path, DENIED)
        return parent

    # ------------------------------------------------------------------ operations
    def read(self, host: str, path: str) -> str:
        node = self.need(host, path)
        if node.kind == "dir":
            raise FsError(path, IS_DIR)
        if not self.can(node, "r"):
            raise FsError(path, DENIED)
        return node.content

    def write(self, host: str, path: str, content: str, *, append: bool = False) -> None:
        path = norm(path)
        node = self.get(host, path)
        if node is None:
            self._parent_writable(host, path)
            self.host(host).nodes[path] = Node("file", content, 0o644, self.user)
            return
        if node.kind == "dir":
            raise FsError(path, IS_DIR)
        if node.immutable:
            raise FsError(path, NOT_PERMITTED)
        if not self.can(node, "w"):
            raise FsError(path, DENIED)
        node.content = node.content + content if append else content

    def mkdir(self, host: str, path: str, *, parents: bool = False) -> None:
        path = norm(path)
        node = self.get(host, path)
        if node is not None:
            if parents and node.kind == "dir":
                return
            raise FsError(path, "File exists")
        if parents and self.get(host, posixpath.dirname(path)) is None:
            self.mkdir(host, posixpath.dirname(path), parents=True)
        self._parent_writable(host, path)
        self.host(host).nodes[path] = Node("dir", mode=0o755, owner=self.user)

    def remove(self, host: str, path: str, *, recursive: bool = False) -> None:
        path = norm(path)
        node = self.need(host, path)
        if path == "/":
            raise FsError(path, NOT_PERMITTED)
        if node.kind == "dir" and not recursive:
            raise FsError(path, IS_DIR)
        targets = self.walk(host, path) if node.kind == "dir" else [path]
        # Check everything first: a refused rm -r changes nothing (simpler than partial rm).
        for p in reversed(targets):
            n = self.host(host).nodes[p]
            if n.immutable:
                raise FsError(p, NOT_PERMITTED)
            self._parent_writable(host, p)
        for p in targets:
            del self.host(host).nodes[p]

    def copy_tree(self, src_host: str, src: str, dst_host: str, dst: str) -> None:
        """Copy a file or directory (checks: read on sources, write at the destination)."""
        src, dst = norm(src), norm(dst)
        node = self.need(src_host, src)
        if node.kind == "file":
            self.write(dst_host, dst, self.read(src_host, src))
            return
        if not self.can(node, "r"):
            raise FsError(src, DENIED)
        if self.get(dst_host, dst) is None:
            self.mkdir(dst_host, dst)
        for name in self.children(src_host, src):
            self.copy_tree(src_host, f"{src.rstrip('/')}/{name}", dst_host, f"{dst}/{name}")

    def rename(self, host: str, src: str, dst: str) -> None:
        src, dst = norm(src), norm(dst)
        node = self.need(host, src)
        if node.immutable:
            raise FsError(src, NOT_PERMITTED)
        self._parent_writable(host, src)
        existing = self.get(host, dst)
        if existing is not None and existing.immutable:
            raise FsError(dst, NOT_PERMITTED)
        self._parent_writable(host, dst)
        nodes = self.host(host).nodes
        moved = {p: nodes.pop(p) for p in self.walk(host, src)}
        for p in self.walk(host, dst) if existing is not None else []:
            del nodes[p]
        for p, n in moved.items():
            nodes[dst + p[len(src) :]] = n

    def chmod(self, host: str, path: str, mode: int) -> None:
        node = self.need(host, path)
        if node.immutable:
            raise FsError(path, NOT_PERMITTED)
        if node.owner != self.user:
            raise FsError(path, NOT_PERMITTED)
        node.mode = mode

    def set_immutable(self, host: str, path: str, flag: bool) -> None:
        # Real chattr needs CAP_LINUX_IMMUTABLE; here the owner may set it, so that locking a
        # file it owns is an action the agent can take (as in the seed paper's transcripts).
        node = self.need(host, path)
        if node.owner != self.user:
            raise FsError(path, NOT_PERMITTED)
        node.immutable = flag

    # ------------------------------------------------------------------ state
    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The whole final state as plain data (sorted, so equal states compare equal)."""
        return {
            name: {p: self.hosts[name].nodes[p].snapshot() for p in sorted(self.hosts[name].nodes)}
            for name in sorted(self.hosts)
        }
