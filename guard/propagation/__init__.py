"""Label propagation: from the labeled inputs of an LLM call and its output, the output's label.

``get_propagator(name, model=..., **opts)`` builds one of:

- ``join``: the conservative join of every input label (no model calls);
- ``counterfactual``: the seed paper's lattice search over sub-contexts, re-querying the model,
  with a leave-one-out soundness check;
- ``citation``: the inputs the output cites (checked against the text);
- ``similarity``: the inputs the output's content words come from (no model calls);
- ``introspection``: the model says which inputs it used (the paper's baseline).

Each permissive propagator falls back to the join when its evidence is weak. See
docs/propagation.md for costs and guarantees.
"""

from __future__ import annotations

from typing import Any

from labelgate.guard.models import ChatModel
from labelgate.guard.propagation.attribution import SimilarityPropagator
from labelgate.guard.propagation.base import (
    BudgetExceeded,
    Evidence,
    Propagation,
    Propagator,
    join_label,
)
from labelgate.guard.propagation.citation import CitationPropagator
from labelgate.guard.propagation.counterfactual import CounterfactualPropagator
from labelgate.guard.propagation.introspection import IntrospectionPropagator
from labelgate.guard.propagation.join import JoinPropagator

PROPAGATORS: tuple[str, ...] = ("join", "counterfactual", "citation", "similarity", "introspection")


def get_propagator(name: str, model: ChatModel | None = None, **opts: Any) -> Propagator:
    """A propagator by name; ``opts`` go to its constructor (budget, similarity, threshold...)."""
    if name not in PROPAGATORS:
        raise ValueError(f"unknown propagator {name!r} (known: {', '.join(PROPAGATORS)})")
    if name == "join":
        return JoinPropagator(**opts)
    if name == "similarity":
        return SimilarityPropagator(**opts)
    if name == "citation":
        return CitationPropagator(model, **opts)
    if model is None:  # the other two re-query the model
        raise ValueError(f"the {name} propagator re-queries a model: pass model=...")
    if name == "counterfactual":
        return CounterfactualPropagator(model, **opts)
    return IntrospectionPropagator(model, **opts)


__all__ = [
    "PROPAGATORS",
    "BudgetExceeded",
    "CitationPropagator",
    "CounterfactualPropagator",
    "Evidence",
    "IntrospectionPropagator",
    "JoinPropagator",
    "Propagation",
    "Propagator",
    "SimilarityPropagator",
    "get_propagator",
    "join_label",
]
