"""labelgate's core: labels, propagation, policies, fingerprints, audit store and tracing.

No web framework here; ``proxy`` and ``evals`` build on this package, never the reverse.
Names are imported lazily so that ``labelgate --help`` does not pay for pydantic.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ItemKind": "guard.items",
    "LLMCall": "guard.items",
    "LabelOrigin": "guard.items",
    "LabeledItem": "guard.items",
    "Provenance": "guard.items",
    "Label": "guard.labels",
    "LabelSpec": "guard.labels",
    "Lattice": "guard.labels",
    "LatticeConfig": "guard.labels",
    "Level": "guard.labels",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'guard' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
