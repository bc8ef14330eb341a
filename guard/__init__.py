"""labelgate's core: labels, propagation, policies, fingerprints, audit store and tracing.

No web framework here; ``proxy`` and ``evals`` build on this package, never the reverse.
Names are imported lazily so that ``labelgate --help`` does not pay for pydantic.
"""

from __future__ import annotations

from labelgate.guard.lazy import lazy_exports

_EXPORTS = {
    "ItemKind": "labelgate.guard.items",
    "LLMCall": "labelgate.guard.items",
    "LabelOrigin": "labelgate.guard.items",
    "LabeledItem": "labelgate.guard.items",
    "LabelReason": "labelgate.guard.items",
    "Label": "labelgate.guard.labels",
    "LabelSpec": "labelgate.guard.labels",
    "Lattice": "labelgate.guard.labels",
    "LatticeConfig": "labelgate.guard.labels",
    "Level": "labelgate.guard.labels",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
