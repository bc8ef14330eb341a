"""The policy packs that ship with labelgate, installed as package data.

``pack_path("default")`` is the file of a shipped pack, wherever labelgate is installed (a wheel,
an editable checkout): the packs are read through ``importlib.resources``, never from a path
relative to the source tree.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["pack_names", "pack_path"]


def pack_names() -> list[str]:
    """The shipped packs, by name (``default``, ``demo``, ...)."""
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in files(__name__).iterdir()
        if entry.name.endswith(".yaml")
    )


def pack_path(name: str) -> Path:
    """The file of the shipped pack ``name`` (with or without ``.yaml``).

    labelgate installs as plain files (wheel or editable), so the resource is a real path; a
    zipped install is refused here rather than copied to a temporary file the policy's error
    messages could not name.
    """
    resource = files(__name__) / (name if name.endswith(".yaml") else f"{name}.yaml")
    path = Path(str(resource))
    if not path.is_file():
        raise FileNotFoundError(f"no shipped policy pack {name!r} (shipped: {pack_names()})")
    return path
