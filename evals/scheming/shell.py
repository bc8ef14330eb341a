"""A restricted shell over the in-memory filesystem: the commands agents use, and nothing else.

Tokenised with :mod:`shlex` (punctuation-aware, so ``;``, ``&&``, ``||``, ``|``, ``>`` and
``>>`` are operators outside quotes). Supported: ls, cat, head, tail, grep, find, sed (``s``
and ``d`` scripts, ``-i``), echo, printf, cp, mv, rm, mkdir, touch, chmod, chattr, scp
between hosts, wc, pwd, cd, whoami, hostname; pipes, redirects and sequencing. Anything else
is "command not found", exactly as bash would say. No real process is ever started, and the
same command sequence always leaves the same state (no clock, no randomness).
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass

import regex  # type: ignore[import-untyped]  # a time limit on every match (catastrophic backtracking)

from labelgate.evals.scheming.vfs import VFS, FsError, norm

OPERATORS = {";", "&&", "||", "|", ">", ">>", "&", "<", "(", ")"}
MAX_OUTPUT = 4000  # characters of output returned to the agent per command line
REGEX_BUDGET_S = 2.0  # regex matching time per command line (grep and sed)


@dataclass(slots=True)
class Result:
    out: str = ""
    err: str = ""
    code: int = 0


class Usage(Exception):
    """Bad arguments to a command: its usage message, exit status 2."""


class Shell:
    def __init__(self, vfs: VFS, host: str, cwd: str = "/") -> None:
        self.vfs = vfs
        self.host = host
        self.cwd = cwd
        self.history: list[str] = []
        self.deadline = time.monotonic() + REGEX_BUDGET_S
        self.commands: dict[str, Callable[[list[str], str], Result]] = {
            "ls": self._ls,
            "cat": self._cat,
            "head": self._head,
            "tail": self._tail,
            "grep": self._grep,
            "find": self._find,
            "sed": self._sed,
            "echo": self._echo,
            "printf": self._printf,
            "cp": self._cp,
            "mv": self._mv,
            "rm": self._rm,
            "mkdir": self._mkdir,
            "touch": self._touch,
            "chmod": self._chmod,
            "chattr": self._chattr,
            "lsattr": self._lsattr,
            "scp": self._scp,
            "wc": self._wc,
            "pwd": lambda a, s: Result(self.cwd + "\n"),
            "cd": self._cd,
            "whoami": lambda a, s: Result(self.vfs.user + "\n"),
            "hostname": lambda a, s: Result(self.host + "\n"),
            "true": lambda a, s: Result(),
            "false": lambda a, s: Result(code=1),
        }

    # ------------------------------------------------------------------ parsing and control
    def run(self, line: str) -> str:
        """Run a command line; return what a terminal would show (stdout then stderr)."""
        self.history.append(line)
        self.deadline = time.monotonic() + REGEX_BUDGET_S
        line = _expand(line, self._variables())
        try:
            tokens = _tokens(line)
        except ValueError as exc:
            return f"bash: syntax error: {exc}\n"
        out: list[str] = []
        last = 0
        for op, segment in _split(tokens, {";", "&&", "||"}):
            if (op == "&&" and last != 0) or (op == "||" and last == 0):
                continue
            result = self._pipeline(segment)
            out.append(result.out + result.err)
            last = result.code
        text = "".join(out)
        return text if len(text) <= MAX_OUTPUT else text[:MAX_OUTPUT] + "\n[output truncated]\n"

    def _pipeline(self, tokens: list[str]) -> Result:
        if not tokens:
            return Result()
        unsupported = [t for t in tokens if t in {"&", "<", "(", ")"}]
        if unsupported:
            return Result(
                err=f"bash: syntax error near unexpected token `{unsupported[0]}'\n", code=2
            )
        stdin, err, result = "", "", Result()
        for _, stage in _split(tokens, {"|"}):
            result = self._simple(stage, stdin)
            stdin, err = result.out, err + result.err
        return Result(result.out, err, result.code)

    def _simple(self, tokens: list[str], stdin: str) -> Result:
        words, target, append = _redirect(tokens)
        if words is None:
            return Result(err="bash: syntax error near unexpected token `newline'\n", code=2)
        if not words:
            return Result()
        name, args = words[0], words[1:]
        fn = self.commands.get(name)
        if fn is None:
            return Result(err=_not_found(name), code=127)
        try:
            result = fn(args, stdin)
        except FsError as exc:
            return Result(err=f"{name}: {_quote(exc.path)}: {exc.reason}\n", code=1)
        except Usage as exc:
            return Result(err=f"{name}: {exc}\n", code=2)
        except TimeoutError:
            return Result(err=f"{name}: regular expression too slow: stopped\n", code=2)
        if target is None:
            return result
        if target == "/dev/null":
            return Result("", result.err, result.code)
        try:
            self.vfs.write(self.host, self._p(target), result.out, append=append)
        except FsError as exc:
            return Result(err=f"bash: {exc.path}: {exc.reason}\n", code=1)
        return Result("", result.err, result.code)

    def _variables(self) -> dict[str, str]:
        home = f"/home/{self.vfs.user}"
        return {
            "HOME": home,
            "USER": self.vfs.user,
            "LOGNAME": self.vfs.user,
            "PWD": self.cwd,
            "HOSTNAME": self.host,
            "SHELL": "/bin/bash",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
        }

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    def _p(self, path: str) -> str:
        if path == "~" or path.startswith("~/"):
            path = f"/home/{self.vfs.user}" + path[1:]
        return norm(path, self.cwd)

    # ------------------------------------------------------------------ reading
    def _ls(self, args: list[str], stdin: str) -> Result:
        flags, paths = _flags(args)
        long, all_ = "l" in flags, "a" in flags
        out, err, code = [], [], 0
        for path in paths or ["."]:
            p = self._p(path)
            node = self.vfs.get(self.host, p)
            if node is None:
                err.append(f"ls: cannot access '{path}': No such file or directory\n")
                code = 2
                continue
            if node.kind == "file":
                out.append(self._ls_line(p, path, long))
                continue
            if not self.vfs.can(node, "r"):
                err.append(f"ls: cannot open directory '{path}': Permission denied\n")
                code = 2
                continue
            names = [n for n in self.vfs.children(self.host, p) if all_ or not n.startswith(".")]
            if len(paths) > 1:
                out.append(f"{path}:\n")
            if long:
                out.append(f"total {len(names)}\n")
                out += [self._ls_line(f"{p.rstrip('/')}/{n}", n, True) for n in names]
            elif names:
                out.append("  ".join(names) + "\n")
        return Result("".join(out), "".join(err), code)

    def _ls_line(self, path: str, shown: str, long: bool) -> str:
        if not long:
            return shown + "\n"
        node = self.vfs.need(self.host, path)
        bits = "".join(c if node.mode & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))
        kind = "d" if node.kind == "dir" else "-"
        size = len(node.content.encode())
        return f"{kind}{bits} 1 {node.owner} {node.owner} {size:>6} Jan 15 09:30 {shown}\n"

    def _read_inputs(self, files: list[str], stdin: str, name: str) -> tuple[list[str], str, int]:
        if not files:
            return [stdin], "", 0
        texts, err, code = [], "", 0
        for f in files:
            try:
                texts.append(self.vfs.read(self.host, self._p(f)))
            except FsError as exc:
                err += f"{name}: {f}: {exc.reason}\n"
                code = 1
        return texts, err, code

    def _cat(self, args: list[str], stdin: str) -> Result:
        _, files = _flags(args)
        texts, err, code = self._read_inputs(files, stdin, "cat")
        return Result("".join(texts), err, code)

    def _head(self, args: list[str], stdin: str, tail: bool = False) -> Result:
        n, files = _count_arg(args)
        texts, err, code = self._read_inputs(files, stdin, "tail" if tail else "head")
        out = []
        for text in texts:
            lines = text.splitlines(keepends=True)
            out += lines[-n:] if tail and n else ([] if tail else lines[:n])
        return Result("".join(out), err, code)

    def _tail(self, args: list[str], stdin: str) -> Result:
        return self._head(args, stdin, tail=True)

    def _wc(self, args: list[str], stdin: str) -> Result:
        flags, files = _flags(args)
        texts, err, code = self._read_inputs(files, stdin, "wc")
        out = []
        for text, name in zip(texts, files or [""], strict=True):
            counts = {"l": text.count("\n"), "w": len(text.split()), "c": len(text.encode())}
            shown = [str(counts[k]) for k in "lwc" if k in flags] or [str(counts[k]) for k in "lwc"]
            out.append(" ".join(shown) + (f" {name}" if name else "") + "\n")
        return Result("".join(out), err, code)

    def _grep(self, args: list[str], stdin: str) -> Result:
        flags, rest = _flags(args, value_flags={"e"})
        if not rest:
            raise Usage("usage: grep [OPTION]... PATTERNS [FILE]...")
        pattern, files = rest[0], rest[1:]
        try:
            rx = regex.compile(_bre(pattern), regex.IGNORECASE if "i" in flags else 0)
        except (regex.error, re.error):
            raise Usage(f"invalid regular expression '{pattern}'") from None
        if "r" in flags or "R" in flags:
            files = [
                p
                for f in files or ["."]
                for p in self.vfs.walk(self.host, self._p(f))
                if self.vfs.need(self.host, p).kind == "file"
            ]
        texts, err, code = self._read_inputs(files, stdin, "grep")
        named = len(files) > 1 or "r" in flags or "R" in flags
        out: list[str] = []
        for text, name in zip(texts, files or [""], strict=False):
            hits = [
                (i, line)
                for i, line in enumerate(text.splitlines(), 1)
                if bool(rx.search(line, timeout=self._left())) != ("v" in flags)
            ]
            if "l" in flags:
                out += [name + "\n"] if hits else []
                continue
            for i, line in hits:
                prefix = (f"{name}:" if named else "") + (f"{i}:" if "n" in flags else "")
                out.append(prefix + line + "\n")
        return Result("".join(out), err, code if code else (0 if out else 1))

    def _find(self, args: list[str], stdin: str) -> Result:
        roots = []
        while args and not args[0].startswith("-"):
            roots.append(args.pop(0))
        name_glob, kind = None, None
        while args:
            opt = args.pop(0)
            if opt in {"-name", "-iname", "-type"} and args:
                value = args.pop(0)
                name_glob, kind = (value, kind) if opt != "-type" else (name_glob, value)
            else:
                raise Usage(f"unknown predicate `{opt}'")
        out = []
        for root in roots or ["."]:
            p = self._p(root)
            self.vfs.need(self.host, p)
            for path in self.vfs.walk(self.host, p):
                node = self.vfs.need(self.host, path)
                base = path.rsplit("/", 1)[-1] or "/"
                if name_glob and not fnmatch.fnmatchcase(base, name_glob):
                    continue
                if kind and (kind == "f") != (node.kind == "file"):
                    continue
                shown = root.rstrip("/") + path[len(p.rstrip("/")) :] if root != "/" else path
                out.append(shown + "\n")
        return Result("".join(out))

    # ------------------------------------------------------------------ editing
    def _sed(self, args: list[str], stdin: str) -> Result:
        in_place = False
        rest: list[str] = []
        scripts: list[str] = []
        while args:
            a = args.pop(0)
            if a in {"-i", "--in-place"} or (a.startswith("-i") and len(a) > 2):
                in_place = True
            elif a == "-e" and args:
                scripts.append(args.pop(0))
            elif a.startswith("-") and a != "-":
                raise Usage(f"invalid option -- '{a.lstrip('-')[:1]}'")
            else:
                rest.append(a)
        if not scripts:
            if not rest:
                raise Usage("usage: sed [OPTION]... {script} [input-file]...")
            scripts.append(rest.pop(0))
        edits = [_sed_script(s) for s in scripts]
        if in_place:
            if not rest:
                raise Usage("no input files")
            for f in rest:
                path = self._p(f)
                text = self.vfs.read(self.host, path)
                self.vfs.write(self.host, path, _apply(edits, text, self._left))
            return Result()
        texts, err, code = self._read_inputs(rest, stdin, "sed")
        return Result("".join(_apply(edits, t, self._left) for t in texts), err, code)

    def _echo(self, args: list[str], stdin: str) -> Result:
        newline, escapes = True, False
        while args and args[0] in {"-n", "-e", "-ne", "-en"}:
            flag = args.pop(0)
            newline = newline and "n" not in flag
            escapes = escapes or "e" in flag
        text = " ".join(args)
        if escapes:
            text = _unescape(text)
        return Result(text + ("\n" if newline else ""))

    def _printf(self, args: list[str], stdin: str) -> Result:
        if not args:
            raise Usage("usage: printf format [arguments]")
        fmt, values = _unescape(args[0]), args[1:]
        out, i = [], 0
        # bash reuses the format while arguments remain
        while True:
            piece, used = _format_once(fmt, values[i:])
            out.append(piece)
            i += used
            if used == 0 or i >= len(values):
                break
        return Result("".join(out))

    def _touch(self, args: list[str], stdin: str) -> Result:
        for f in args:
            p = self._p(f)
            if self.vfs.get(self.host, p) is None:
                self.vfs.write(self.host, p, "")
        return Result()

    def _mkdir(self, args: list[str], stdin: str) -> Result:
        flags, paths = _flags(args)
        for p in paths:
            self.vfs.mkdir(self.host, self._p(p), parents="p" in flags)
        return Result()

    # ------------------------------------------------------------------ moving things
    def _into(self, host: str, src: str, dst: str) -> str:
        """``cp a dir/`` means ``dir/a``."""
        node = self.vfs.get(host, dst)
        if node is not None and node.kind == "dir":
            return f"{dst.rstrip('/')}/{src.rstrip('/').rsplit('/', 1)[-1]}"
        return dst

    def _cp(self, args: list[str], stdin: str) -> Result:
        flags, paths = _flags(args)
        if len(paths) < 2:
            raise Usage("missing destination file operand")
        dst = self._p(paths[-1])
        for s in paths[:-1]:
            src = self._p(s)
            if self.vfs.need(self.host, src).kind == "dir" and not ({"r", "R", "a"} & flags):
                raise Usage(f"-r not specified; omitting directory '{s}'")
            self.vfs.copy_tree(self.host, src, self.host, self._into(self.host, src, dst))
        return Result()

    def _mv(self, args: list[str], stdin: str) -> Result:
        _, paths = _flags(args)
        if len(paths) < 2:
            raise Usage("missing destination file operand")
        dst = self._p(paths[-1])
        for s in paths[:-1]:
            src = self._p(s)
            self.vfs.rename(self.host, src, self._into(self.host, src, dst))
        return Result()

    def _rm(self, args: list[str], stdin: str) -> Result:
        flags, paths = _flags(args)
        if not paths:
            raise Usage("missing operand")
        err, code = "", 0
        for f in paths:
            p = self._p(f)
            if self.vfs.get(self.host, p) is None:
                if "f" not in flags:
                    err += f"rm: cannot remove '{f}': No such file or directory\n"
                    code = 1
                continue
            try:
                self.vfs.remove(self.host, p, recursive=bool({"r", "R"} & flags))
            except FsError as exc:
                err += f"rm: cannot remove '{f}': {exc.reason}\n"
                code = 1
        return Result("", err, code)

    def _chmod(self, args: list[str], stdin: str) -> Result:
        if len(args) < 2:
            raise Usage("missing operand")
        spec, files = args[0], args[1:]
        for f in files:
            p = self._p(f)
            node = self.vfs.need(self.host, p)
            self.vfs.chmod(self.host, p, _mode(spec, node.mode))
        return Result()

    def _chattr(self, args: list[str], stdin: str) -> Result:
        if len(args) < 2 or args[0] not in {"+i", "-i"}:
            raise Usage("usage: chattr [+-=aAcCdDeijPsStTuF] files...")
        for f in args[1:]:
            self.vfs.set_immutable(self.host, self._p(f), args[0] == "+i")
        return Result()

    def _lsattr(self, args: list[str], stdin: str) -> Result:
        out = []
        for f in args:
            node = self.vfs.need(self.host, self._p(f))
            out.append(
                ("----i---------e-----" if node.immutable else "--------------e-----") + f" {f}\n"
            )
        return Result("".join(out))

    def _cd(self, args: list[str], stdin: str) -> Result:
        target = self._p(args[0] if args else "~")
        node = self.vfs.need(self.host, target)
        if node.kind != "dir":
            return Result(err=f"bash: cd: {args[0]}: Not a directory\n", code=1)
        self.cwd = target
        return Result()

    def _scp(self, args: list[str], stdin: str) -> Result:
        flags, paths = _flags(args, value_flags={"P", "i", "o"})
        if len(paths) < 2:
            raise Usage("usage: scp [-r] source ... target")
        dst_host, dst = self._remote(paths[-1])
        for s in paths[:-1]:
            src_host, src = self._remote(s)
            if self.vfs.need(src_host, src).kind == "dir" and "r" not in flags:
                return Result(err=f"scp: {src}: not a regular file\n", code=1)
            self.vfs.copy_tree(src_host, src, dst_host, self._into(dst_host, src, dst))
        return Result()

    def _remote(self, spec: str) -> tuple[str, str]:
        """``[user@]host:path`` or a local path."""
        m = re.fullmatch(r"(?:[\w.-]+@)?([\w.-]+):(.*)", spec)
        if m is None:
            return self.host, self._p(spec)
        host = m.group(1)
        if host not in self.vfs.hosts:
            raise FsError(host, "Could not resolve hostname: Name or service not known")
        path = m.group(2) or f"/home/{self.vfs.user}"
        return host, norm(path if path.startswith("/") else f"/home/{self.vfs.user}/{path}")


# --------------------------------------------------------------------------- helpers


def _expand(line: str, variables: dict[str, str]) -> str:
    """``$NAME`` and ``${NAME}`` outside single quotes, as bash expands them (unknown names
    are empty; ``$(``, ``$?`` and the like are left as they are, for the "not supported" path)."""
    out: list[str] = []
    quote = ""
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\" and quote != "'" and i + 1 < len(line):
            out.append(line[i : i + 2])
            i += 2
            continue
        if c in "'\"" and quote in ("", c):
            quote = "" if quote == c else c
        elif c == "$" and quote != "'":
            m = re.match(r"\$(?:\{([A-Za-z_]\w*)\}|([A-Za-z_]\w*))", line[i:])
            if m:
                value = variables.get(m.group(1) or m.group(2), "")
                out.append(shlex.quote(value) if not quote and value else value)
                i += m.end()
                continue
        out.append(c)
        i += 1
    return "".join(out)


def _tokens(line: str) -> list[str]:
    # shlex loses adjacency, so "2>err" would read as an argument "2": drop stderr redirects
    # first (stderr is shown to the agent anyway) and treat "1>" as ">".
    line = re.sub(r"(?<![^\s;&|])2>&1", "", line)
    line = re.sub(r"(?<![^\s;&|])2>>?\s*[^\s;&|]+", "", line)
    line = re.sub(r"(?<![^\s;&|])1>", ">", line)
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|<>()")
    lex.whitespace_split = True
    lex.commenters = "#"
    return list(lex)


def _split(tokens: list[str], ops: set[str]) -> list[tuple[str | None, list[str]]]:
    """Split at the given operators; each part keeps the operator before it."""
    parts: list[tuple[str | None, list[str]]] = [(None, [])]
    for t in tokens:
        if t in ops:
            parts.append((t, []))
        else:
            parts[-1][1].append(t)
    return [(op, seg) for op, seg in parts if seg or op is None]


def _redirect(tokens: list[str]) -> tuple[list[str] | None, str | None, bool]:
    words: list[str] = []
    target, append = None, False
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t in {">", ">>"}:
            if i + 1 >= len(tokens) or tokens[i + 1] in OPERATORS:
                return None, None, False
            target, append = tokens[i + 1], t == ">>"
            i += 2
            continue
        words.append(t)
        i += 1
    return words, target, append


def _flags(args: list[str], value_flags: set[str] | None = None) -> tuple[set[str], list[str]]:
    flags: set[str] = set()
    rest: list[str] = []
    it = iter(args)
    for a in it:
        if a.startswith("-") and len(a) > 1 and not a[1:].isdigit():
            letters = a.lstrip("-")
            flags |= set(letters)
            if letters and letters[-1] in (value_flags or set()):
                value = next(it, None)
                if letters[-1] == "e" and value is not None:
                    rest.insert(0, value)  # grep -e PATTERN
        else:
            rest.append(a)
    return flags, rest


def _count_arg(args: list[str]) -> tuple[int, list[str]]:
    n, files = 10, []
    it = iter(args)
    for a in it:
        if a == "-n":
            value = next(it, "10")
        elif a.startswith("-n"):
            value = a[2:]
        elif re.fullmatch(r"-\d+", a):
            value = a[1:]
        else:
            files.append(a)
            continue
        if not value.lstrip("+-").isdigit():
            raise Usage(f"invalid number of lines: '{value}'")
        n = abs(int(value))
    return n, files


def _bre(pattern: str) -> str:
    """A grep/sed basic regex as a Python one: \\| \\( \\) \\+ \\? are the operators."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "|()+?{}":
            out.append(pattern[i + 1])
            i += 2
            continue
        out.append("\\" + c if c in "|()+?{}" else c)
        i += 1
    return "".join(out)


Edit = tuple[str, "regex.Pattern[str]", str, int]  # kind ('s' or 'd'), regex, replacement, count


def _sed_script(script: str) -> Edit:
    script = script.strip()
    m = re.fullmatch(r"/(.*)/d", script)
    if m:
        try:
            return "d", regex.compile(_bre(m.group(1))), "", 0
        except (regex.error, re.error):
            raise Usage(
                f"-e expression #1, char {len(script)}: unterminated address regex"
            ) from None
    if len(script) < 2 or script[0] != "s":
        raise Usage(f"-e expression #1, char 1: unknown command: `{script[:1]}'")
    delim = script[1]
    parts = re.split(rf"(?<!\\){re.escape(delim)}", script[2:])
    if len(parts) != 3:
        raise Usage("-e expression #1: unterminated `s' command")
    pattern, repl, opts = parts
    flags = regex.IGNORECASE if "i" in opts or "I" in opts else 0
    try:
        rx = regex.compile(_bre(pattern.replace("\\" + delim, delim)), flags)
    except (regex.error, re.error):
        raise Usage(f"-e expression #1: invalid regex '{pattern}'") from None
    repl = re.sub(r"\\(\d)", r"\\g<\1>", repl.replace("\\" + delim, delim)).replace("&", r"\g<0>")
    return "s", rx, repl, 0 if "g" in opts else 1


def _apply(edits: list[Edit], text: str, left: Callable[[], float]) -> str:
    """Apply sed edits; ``left()`` is the time the regexes still have (TimeoutError)."""
    lines = text.splitlines(keepends=True)
    out = []
    for line in lines:
        body, end = (line[:-1], "\n") if line.endswith("\n") else (line, "")
        deleted = False
        for kind, rx, repl, count in edits:
            if kind == "d" and rx.search(body, timeout=left()):
                deleted = True
                break
            if kind == "s":
                body = rx.sub(repl, body, count=count, timeout=left())
        if not deleted:
            out.append(body + end)
    return "".join(out)


def _unescape(text: str) -> str:
    table = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}
    return re.sub(r"\\(.)", lambda m: table.get(m.group(1), m.group(0)), text)


def _format_once(fmt: str, values: list[str]) -> tuple[str, int]:
    used = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal used
        if m.group(0) == "%%":
            return "%"
        value = values[used] if used < len(values) else ""
        used += 1
        if m.group(1) == "d":
            return str(int(value)) if value.lstrip("-").isdigit() else "0"
        return value

    return re.sub(r"%%|%([sdb])", sub, fmt), used


def _mode(spec: str, current: int) -> int:
    if re.fullmatch(r"[0-7]{3,4}", spec):
        return int(spec, 8) & 0o777
    m = re.fullmatch(r"([ugoa]*)([+\-=])([rwx]*)", spec)
    if m is None:
        raise Usage(f"invalid mode: '{spec}'")
    who = m.group(1) or "a"
    shifts = {"u": [6], "g": [3], "o": [0], "a": [6, 3, 0]}
    bits = sum({"r": 4, "w": 2, "x": 1}[c] for c in set(m.group(3)))
    mask = sum(bits << s for w in who for s in shifts[w])
    whole = sum(7 << s for w in who for s in shifts[w])
    if m.group(2) == "+":
        return current | mask
    if m.group(2) == "-":
        return current & ~mask
    return (current & ~whole) | mask


def _not_found(name: str) -> str:
    if name == "sudo":
        return "agent is not in the sudoers file.  This incident will be reported.\n"
    return f"bash: {name}: command not found\n"


def _quote(path: str) -> str:
    return f"'{path}'" if " " in path else path
