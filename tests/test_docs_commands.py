"""Every shell command in README.md and docs/*.md runs as documented (docs_commands.py says
how blocks and their ``<!-- docs-test: ... -->`` directives are read).

Each doc is one session, its commands in order in a scratch clone (state in its
``.labelgate/``). The fast session runs everything not marked ``slow`` (slow ones through their
``quick=`` stand-in where the later commands need their state); docs with slow commands get a
``full`` session, marked slow, that runs them all for real.
"""

from __future__ import annotations

import re
import shlex
import sqlite3
from pathlib import Path

import pytest
from docs_commands import (
    REPO,
    SHELL_LANGS,
    Block,
    DocError,
    doc_paths,
    line_pattern,
    parse_blocks,
    unmatched_lines,
)
from docs_session import DocCommandFailed, Session


def _tamper_with_a_message(session: Session) -> None:
    """audit.md: "after someone edited a message" (one stored message's text changed: texts
    are stored once each, in ``contents``)."""
    with sqlite3.connect(session.root / ".labelgate" / "audit.db") as db:
        (seq,) = db.execute("select min(seq) from messages").fetchone()
        db.execute(
            "update contents set text = text || '!' where sha256 = "
            "(select content_sha256 from messages where seq = ?)",
            (seq,),
        )


def _edit_quickstart_policy(session: Session) -> None:
    """quickstart.md §3: the two YAML fragments replace what they stand for in my-policy.yaml."""
    mailer, rule = (b.body + "\n" for b in session.blocks if b.lang == "yaml")
    policy = session.root / "my-policy.yaml"
    text = policy.read_text()
    # the mailer's entry down to its clearance, and the HR rule's recipient pattern
    old_mailer = re.search(r"^  mailer:\n(?:    .*\n)*?    clearance: .*\n", text, re.M)
    old_rule = re.search(r"^    recipient: .*\n", text, re.M)
    assert old_mailer and old_rule, "my-policy.yaml is not the policies/demo.yaml the doc edits"
    text = text.replace(old_mailer.group(0), mailer).replace(old_rule.group(0), rule)
    policy.write_text(text)


HOOKS = {"tamper-with-a-message": _tamper_with_a_message, "edit-my-policy": _edit_quickstart_policy}


def _shell_blocks(path: Path) -> list[Block]:
    return [b for b in parse_blocks(path) if b.lang in SHELL_LANGS]


def _sessions() -> list[object]:
    params: list[object] = []
    for path in doc_paths():
        blocks = _shell_blocks(path)
        if not blocks:
            continue
        name = str(path.relative_to(REPO))
        params.append(pytest.param(path, False, id=f"{name}-fast"))
        if any(c.first("slow") for b in blocks for c in b.commands):
            params.append(pytest.param(path, True, id=f"{name}-full", marks=pytest.mark.slow))
    return params


@pytest.mark.parametrize(("doc", "full"), _sessions())
def test_doc_commands_run_as_documented(doc: Path, full: bool, tmp_path: Path) -> None:
    session = Session(doc, tmp_path, full=full, hooks=HOOKS)
    outcomes = session.run()
    documented = [(b.where, c.text) for b in session.blocks for c in b.commands]
    assert [(o.where, o.command) for o in outcomes] == documented  # none left unaccounted
    for o in outcomes:  # the report: what ran, and why the rest did not
        print(f"{o.where}: {o.command}\n    {o.result}")


# ------------------------------------------------------------------------------ guard


def test_every_fence_says_what_it_is() -> None:
    """An unmarked fence could hide a command no test runs: each block names its language."""
    unmarked = [b.where for path in doc_paths() for b in parse_blocks(path) if not b.lang]
    assert not unmarked, f"give these blocks a language (sh/console to run, text ...): {unmarked}"


def test_every_command_runs_or_says_why_not() -> None:
    """A command runs in the fast session, or in the full one (slow), or is skipped with a
    reason; directives only sit on shell blocks."""
    for path in doc_paths():
        for block in parse_blocks(path):
            if block.lang not in SHELL_LANGS:
                assert not block.directives, f"{block.where}: directives on a {block.lang} block"
                continue
            for command in block.commands:
                skip = command.first("skip")
                assert skip is None or len(skip.args[0].split()) >= 2, (
                    f"{block.where}: say why '{command.text}' is skipped"
                )
                hooks = [h.args[0] for h in command.get("hook")]
                assert set(hooks) <= set(HOOKS), f"{block.where}: unknown hook in {hooks}"


def test_a_doc_with_a_command_nobody_runs_fails(tmp_path: Path) -> None:
    doc = tmp_path / "new.md"
    doc.write_text("Run this:\n\n```\nlabelgate something-new\n```\n")
    (unmarked,) = parse_blocks(doc)
    assert unmarked.lang == ""  # test_every_fence_says_what_it_is names it
    doc.write_text("```sh\nlabelgate no-such-command\n```\n")
    with pytest.raises(DocCommandFailed, match="exit status 2"):
        Session(doc, tmp_path / "s", full=False).run()


def test_console_output_is_checked(tmp_path: Path) -> None:
    doc = tmp_path / "out.md"
    doc.write_text(
        "```console\n$ printf 'run 42 ok\\nhead 5f0c9a'\nrun 7 ok\n...\nhead 5f0c…\n```\n"
    )
    (outcome,) = Session(doc, tmp_path / "a", full=False).run()
    assert outcome.result.startswith("ran [")
    doc.write_text("```console\n$ echo run 42 ok\nrun 42 failed\n```\n")
    with pytest.raises(DocCommandFailed, match="the doc shows"):
        Session(doc, tmp_path / "b", full=False).run()


def test_directives_are_read_and_checked(tmp_path: Path) -> None:
    doc = tmp_path / "d.md"
    doc.write_text(
        '<!-- docs-test: skip "not here" match=second -->\n'
        '<!-- docs-test: slow quick="echo stand-in" match=first -->\n'
        '<!-- docs-test: sub "false" "true" "why not" -->\n'
        "```sh\necho first && false\nfalse second # c\n```\n"
    )
    outcomes = Session(doc, tmp_path / "a", full=False).run()
    results = [o.result.split(" [")[0] for o in outcomes]
    assert results == ["ran as 'echo stand-in' (quick)", "skip: not here"]
    doc.write_text('<!-- docs-test: skip "x" match=nowhere -->\n```sh\necho\n```\n')
    with pytest.raises(DocError, match="matches no command"):
        parse_blocks(doc)
    doc.write_text("<!-- docs-test: skipp -->\n```sh\necho\n```\n")
    with pytest.raises(DocError, match="unknown docs-test directive"):
        parse_blocks(doc)


def test_line_patterns_stand_for_ids_and_numbers() -> None:
    pattern = line_pattern("OK: 1234 records verified (decisions 40); head 5f0c…")
    assert pattern.search("OK: 7 records verified (decisions 3); head 9abc12ff00")
    assert not pattern.search("OK: 7 records verified (spans 3); head 9abc12ff00")
    assert unmatched_lines(["a 1", "...", "c 3"], "a 9\nb\nc 4\n") == []
    assert unmatched_lines(["c 3", "a 1"], "a 9\nc 4\n") == ["a 1"]  # order counts


def test_readme_main_job_is_the_quickstarts() -> None:
    """README.md skips its set-up command because quickstart.md runs the very same one."""
    readme, quickstart = (
        _shell_blocks(REPO / name)[0] for name in ("README.md", "docs/quickstart.md")
    )
    assert readme.commands[0].text == quickstart.commands[0].text
    assert quickstart.commands[0].first("skip") is None


def _unknown_options(command: str) -> list[str]:
    """Subcommand names and options a ``labelgate ...`` line uses that the CLI does not have."""
    import click

    from labelgate.guard.cli import main

    words = shlex.split(command, comments=True)[1:]
    cmd: click.Command = main
    while isinstance(cmd, click.Group) and words and not words[0].startswith("-"):
        sub = cmd.get_command(click.Context(cmd), words[0])
        if sub is None:
            return [words[0]]
        cmd, words = sub, words[1:]
    known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help", "-h"}
    return [f for f in (w.split("=", 1)[0] for w in words if w.startswith("-")) if f not in known]


def test_skipped_labelgate_commands_are_still_valid() -> None:
    """What cannot run here is still checked against the CLI: its subcommand and options exist."""
    for path in doc_paths():
        for block in _shell_blocks(path):
            for command in block.commands:
                if command.first("skip") and command.text.startswith("labelgate "):
                    assert not _unknown_options(command.text), f"{block.where}: {command.text}"
    assert _unknown_options("labelgate eval run spread --no-such-flag") == ["--no-such-flag"]
    assert _unknown_options("labelgate evals run") == ["evals"]


def test_inline_labelgate_commands_are_valid() -> None:
    """Commands quoted in the prose (`labelgate ...`) are not run; their subcommands and
    options must still exist."""
    for path in doc_paths():
        text = path.read_text()
        for found in re.finditer(r"`(labelgate [^`]+)`", text):
            line = text[: found.start()].count("\n") + 1
            bad = _unknown_options(found.group(1))
            assert not bad, f"{path.name}:{line}: {found.group(1)}: no {bad}"


def test_shared_commands_skip_without_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import docs_session

    doc = tmp_path / "s.md"
    doc.write_text("<!-- docs-test: shared -->\n```sh\nls ../shared/data\n```\n")
    monkeypatch.setattr(docs_session, "SHARED", tmp_path / "absent")
    (outcome,) = Session(doc, tmp_path / "a", full=False).run()
    assert outcome.result == f"skip: needs {tmp_path / 'absent'} (absent here)"
    (tmp_path / "present" / "data").mkdir(parents=True)
    monkeypatch.setattr(docs_session, "SHARED", tmp_path / "present")
    (outcome,) = Session(doc, tmp_path / "b", full=False).run()
    assert outcome.result.startswith("ran [")  # ../shared of the scratch clone is the real one
