"""labelgate's core: labels, propagation, policies, fingerprints, audit store and tracing.

No web framework here; ``proxy`` and ``evals`` build on this package, never the reverse.
Names are imported lazily so that ``labelgate --help`` does not pay for pydantic.
"""

from __future__ import annotations

from guard.lazy import lazy_exports

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

__getattr__ = lazy_exports(__name__, _EXPORTS)
