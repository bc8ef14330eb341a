"""Find the shell commands of README.md and docs/*.md, and run them as a reader would.

A fenced block marked ``sh``/``bash``/``shell`` holds commands, one a (logical) line;
``console`` holds ``$ command`` lines each followed by the output the doc shows, which the
run must reproduce (numbers, hex ids and ``...``/``…`` are wildcards). Every other block must
say what it is (``text``, ``yaml``, ``python``, ...): an unmarked fence is an error, so a
command cannot hide in one.

Directives are HTML comments on the lines just above a block, one per line::

    <!-- docs-test: ACTION ARG... [match=TEXT] -->

``match=TEXT`` limits a directive to the block's commands containing TEXT. Actions:

- ``skip REASON``: not run; the reason is shown in the test report.
- ``slow [quick=COMMAND]``: run only in the doc's ``full`` (slow-marked) session; the fast
  session runs COMMAND in its place when given (a stand-in that makes the same state).
- ``shared``: needs ``../shared`` beside the repository; the session skips without it.
- ``background port=N [ready=PATH]``: a server: started, waited for (GET PATH returns 200),
  left running for the blocks after it, stopped at the end. It is moved to a free port and
  the session's later commands are rewritten from N to that port.
- ``hook NAME``: a named step the doc describes in prose (e.g. an edit), run before the command.
- ``sub OLD NEW REASON``: run the command with OLD replaced by NEW.
- ``let NAME COMMAND``: NAME in the commands is replaced by COMMAND's output (an id).
- ``exit N``: the command's expected exit status (default 0).
- ``expect TEXT``: the command's output contains TEXT.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHELL_LANGS = frozenset({"sh", "bash", "shell", "console"})
ACTIONS = frozenset(
    {"skip", "slow", "shared", "background", "hook", "sub", "let", "exit", "expect"}
)
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)")
_DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(.*?)\s*-->\s*$")
_ARITY = {"skip": 1, "slow": 0, "shared": 0, "background": 0, "hook": 1, "sub": 3, "let": 2}
_ARITY |= {"exit": 1, "expect": 1}


class DocError(ValueError):
    """A doc that the harness cannot run as written (with file:line)."""


@dataclass(frozen=True)
class Directive:
    action: str
    args: tuple[str, ...]
    options: dict[str, str]
    line: int

    def applies(self, command: str) -> bool:
        return self.options.get("match", "") in command


@dataclass
class Command:
    text: str
    line: int
    expected: list[str] = field(default_factory=list)  # a console block's output lines
    directives: list[Directive] = field(default_factory=list)

    def get(self, action: str) -> list[Directive]:
        return [d for d in self.directives if d.action == action]

    def first(self, action: str) -> Directive | None:
        found = self.get(action)
        return found[0] if found else None


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    body: str
    directives: list[Directive]
    commands: list[Command] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{shown(self.path)}:{self.line}"


def shown(path: Path) -> str:
    """A path as messages name it: relative to the repository where it is inside."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def doc_paths() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def parse_directive(body: str, line: int, where: str) -> Directive:
    try:
        words = shlex.split(body)
    except ValueError as exc:
        raise DocError(f"{where}: bad docs-test directive {body!r}: {exc}") from exc
    if not words or words[0] not in ACTIONS:
        raise DocError(f"{where}: unknown docs-test directive {body!r} (known: {sorted(ACTIONS)})")
    action, rest = words[0], words[1:]
    options = dict(w.split("=", 1) for w in rest if _is_option(action, w))
    args = tuple(w for w in rest if not _is_option(action, w))
    if len(args) != _ARITY[action] or (action == "skip" and not args[0].strip()):
        raise DocError(f"{where}: '{action}' takes {_ARITY[action]} argument(s): {body!r}")
    return Directive(action, args, options, line)


def _is_option(action: str, word: str) -> bool:
    key = word.split("=", 1)[0]
    allowed = {"match"} | {"slow": {"quick"}, "background": {"port", "ready"}}.get(action, set())
    return "=" in word and key in allowed


def parse_blocks(path: Path) -> list[Block]:
    """Every fenced block of a markdown file, with the directives just above it."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening.groups()
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence)), None
        )
        if end is None:
            raise DocError(f"{shown(path)}:{i + 1}: unclosed code fence")
        blocks.append(_block(path, lines, i, end, lang))
        i = end + 1
    return blocks


def _block(path: Path, lines: list[str], start: int, end: int, lang: str) -> Block:
    directives: list[Directive] = []
    j = start - 1
    while j >= 0 and (found := _DIRECTIVE.match(lines[j])):
        where = f"{shown(path)}:{j + 1}"
        directives.insert(0, parse_directive(found.group(1), j + 1, where))
        j -= 1
    block = Block(path, start + 1, lang.lower(), "\n".join(lines[start + 1 : end]), directives)
    if block.lang in SHELL_LANGS:
        block.commands = _commands(block, start + 2)
        for command in block.commands:
            command.directives = [d for d in directives if d.applies(command.text)]
        for d in directives:
            if not any(d.applies(c.text) for c in block.commands):
                raise DocError(f"{block.where}: directive '{d.action}' matches no command")
    return block


def _commands(block: Block, first_line: int) -> list[Command]:
    if block.lang == "console":
        return _console_commands(block, first_line)
    commands: list[Command] = []
    pending: list[str] = []
    for n, raw in enumerate(block.body.splitlines(), first_line):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        pending.append(stripped.removesuffix("\\").rstrip())
        if not stripped.endswith("\\"):
            commands.append(Command(" ".join(pending), n - len(pending) + 1))
            pending = []
    if not commands:
        raise DocError(f"{block.where}: a {block.lang} block without a command")
    return commands


def _console_commands(block: Block, first_line: int) -> list[Command]:
    commands: list[Command] = []
    for n, raw in enumerate(block.body.splitlines(), first_line):
        if raw.startswith("$ "):
            commands.append(Command(raw[2:].strip(), n))
        elif commands and raw.strip():
            commands[-1].expected.append(raw)
        elif raw.strip():
            raise DocError(f"{block.where}: line {n}: console output before any '$ ' command")
    return commands


# ------------------------------------------------------------------------ output matching

_WILD = re.compile(
    r"(?P<dots>\.\.\.|…)"
    r"|(?P<hex>(?<![0-9A-Za-z])(?=[0-9a-f]*\d)[0-9a-f]{4,}(?![0-9A-Za-z]))"  # ids, hashes
    r"|(?P<num>\d+(?:\.\d+)?)"
    r"|(?P<space>\s+)"
)
_STANDS_FOR = {"dots": ".*?", "hex": "[0-9a-f]+", "num": r"\d+(?:\.\d+)?", "space": r"\s+"}


def line_pattern(expected: str) -> re.Pattern[str]:
    """The doc's line as a pattern: ids, numbers, times and elisions stand for any value."""
    parts: list[str] = []
    pos = 0
    for m in _WILD.finditer(expected):
        parts.append(re.escape(expected[pos : m.start()]))
        parts.append(_STANDS_FOR[str(m.lastgroup)])
        pos = m.end()
    parts.append(re.escape(expected[pos:]))
    return re.compile("".join(parts))


def unmatched_lines(expected: list[str], output: str) -> list[str]:
    """The doc's output lines not found, in order, in the real output (empty: all shown)."""
    actual = output.splitlines()
    at = 0
    missing: list[str] = []
    for want in expected:
        if want.strip() in ("...", "…"):
            continue
        pattern = line_pattern(want.strip())
        hit = next((k for k in range(at, len(actual)) if pattern.search(actual[k])), None)
        if hit is None:
            missing.append(want)
        else:
            at = hit + 1
    return missing
