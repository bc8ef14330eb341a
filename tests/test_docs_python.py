"""The Python examples of docs/python-api.md run as written: every ``python`` block, in order,
in one namespace (top-level ``await`` allowed), from a scratch folder. A block that raises
fails the test with the doc's file and line."""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
from pathlib import Path
from typing import Any

import pytest
from docs_commands import REPO, parse_blocks

DOC = REPO / "docs" / "python-api.md"


async def _run_blocks(namespace: dict[str, Any]) -> list[str]:
    ran = []
    for block in parse_blocks(DOC):
        if block.lang != "python":
            continue
        code = compile(
            block.body, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
        )
        result = eval(code, namespace)  # a doc example, run as its reader would
        if inspect.isawaitable(result):
            await result
        ran.append(block.where)
    return ran


def test_every_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LABELGATE_DB", raising=False)
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    ran = asyncio.run(_run_blocks(namespace))
    assert len(ran) >= 8, ran
    assert (tmp_path / "evals" / "audit.db").exists() and os.listdir(tmp_path / "evals" / "reports")
