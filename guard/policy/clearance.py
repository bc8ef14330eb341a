"""Can a label be read by an agent (or by the outside world)?

A clearance is turned into the label of the most an agent may read, with the lowest
integrity and the label's own sources (clearances speak about secrecy, not trust), so
``Label.flows_to`` does the comparison and the lattice stays the single source of truth.
"""

from __future__ import annotations

from labelgate.guard.labels import Label, Lattice
from labelgate.guard.policy.spec import Clearance


def clearance_label(
    lattice: Lattice, clearance: Clearance, identity: str | None, label: Label
) -> Label:
    ids = set(clearance.readers) | ({identity} if identity else set())
    if label.readers is not None and ids & label.readers:
        # holding one allowed identity is enough (flows_to alone would demand all of them)
        ids = {min(ids & label.readers)}
    conf = clearance.confidentiality
    return Label(
        confidentiality=lattice.conf(conf) if conf else lattice.confidentiality_levels[0],
        integrity=lattice.integrity_levels[0],
        # no identity at all: only labels without a readers restriction are readable
        # (an empty set would wrongly act as "reads everything" under the subset test)
        readers=frozenset(ids) if ids else None,
        categories=frozenset(clearance.categories),
        sources=label.sources,
    )


def readable(
    lattice: Lattice, label: Label, clearance: Clearance, identity: str | None
) -> tuple[bool, str]:
    """Whether ``label`` flows to the clearance, and a readable explanation."""
    target = clearance_label(lattice, clearance, identity, label)
    who = identity or "the outside world"
    if label.flows_to(target):
        return True, f"{label.short()} is readable by {who}"
    problems: list[str] = []
    if label.confidentiality > target.confidentiality:
        problems.append(
            f"{label.confidentiality} is above {who}'s clearance {target.confidentiality}"
        )
    extra = label.categories - target.categories
    if extra:
        problems.append(f"{who} is not cleared for {', '.join(sorted(extra))}")
    if label.readers is not None and not (target.readers and target.readers <= label.readers):
        problems.append(f"readers are limited to {', '.join(sorted(label.readers)) or 'nobody'}")
    return False, "; ".join(problems) or f"{label.short()} does not flow to {who}"
