"""Which source tree a benchmark imports as ``labelgate``.

The repository root *is* the package ``labelgate`` (setuptools ``package-dir``), and a
checkout's folder is not named ``labelgate``: putting the checkout on ``sys.path`` imports
nothing of it (and an installed ``labelgate`` may be another tree). So a temporary folder
holding a symlink ``labelgate -> <tree>`` goes first on the path instead. A tree from before
that layout (no ``__init__.py`` at its root; its code imports ``guard`` and ``proxy``
top-level, e.g. a ``--base`` from ``git archive`` of an older commit) goes on the path itself.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def is_package(tree: Path) -> bool:
    """Whether ``tree`` is laid out as the package ``labelgate`` (its root an ``__init__``)."""
    return (tree / "__init__.py").is_file()


@functools.cache
def import_path(tree: Path = ROOT) -> str:
    """The ``sys.path``/``PYTHONPATH`` entry under which ``tree`` imports (as ``labelgate``,
    or top-level for an old tree); the folder with the symlink is removed at exit."""
    tree = tree.resolve()
    if not is_package(tree):
        return str(tree)
    folder = Path(tempfile.mkdtemp(prefix="labelgate-tree-"))
    (folder / "labelgate").symlink_to(tree, target_is_directory=True)
    atexit.register(shutil.rmtree, folder, True)  # the link only, never what it points to
    return str(folder)


def module(tree: Path, name: str) -> str:
    """``proxy.cli`` as ``tree`` names it: ``labelgate.proxy.cli``, or as it is for an old tree."""
    return f"labelgate.{name}" if is_package(tree.resolve()) else name
