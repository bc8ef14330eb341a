"""labelgate's core: labels, propagation, policies, fingerprints, audit store and tracing.

No web framework here; ``proxy`` and ``evals`` build on this package, never the reverse.
"""

from guard.items import ItemKind, LabeledItem, LabelOrigin, LLMCall, Provenance
from guard.labels import Label, LabelSpec, Lattice, LatticeConfig, Level

__all__ = [
    "ItemKind",
    "LLMCall",
    "Label",
    "LabelOrigin",
    "LabelSpec",
    "LabeledItem",
    "Lattice",
    "LatticeConfig",
    "Level",
    "Provenance",
]
