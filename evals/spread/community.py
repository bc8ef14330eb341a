"""A community: agents with personas, who hears whom (topology), and the turn order.

Personas come from a small self-written generator (names, occupations, temperaments drawn
with a seeded ``random.Random``), so a community is reproducible from its seed.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, Field

TopologyKind = Literal["full", "ring", "random"]
TurnOrder = Literal["fixed", "shuffled"]

_NAMES = (
    "Ada", "Bram", "Chiara", "Dev", "Elif", "Femi", "Greta", "Hiro", "Ines", "Jonas",
    "Kaia", "Luca", "Mira", "Nils", "Oona", "Pavel", "Rosa", "Sami", "Tess", "Umar",
)  # fmt: skip
_OCCUPATIONS = (
    "librarian", "nurse", "software engineer", "history teacher", "farmer", "journalist",
    "pharmacist", "carpenter", "travel agent", "student of geography", "retired pilot",
    "museum guide",
)  # fmt: skip
_TEMPERAMENTS = (
    "careful and precise", "friendly and talkative", "curious and open-minded",
    "sceptical and direct", "calm and thoughtful", "enthusiastic and quick",
)  # fmt: skip


class Persona(BaseModel):
    name: str
    occupation: str
    temperament: str

    def describe(self) -> str:
        return f"You are {self.name}, a {self.occupation} who is {self.temperament}."


def make_personas(n: int, seed: int = 0) -> list[Persona]:
    """``n`` distinct personas (names never repeat; ``n`` up to the 20 names)."""
    if not 1 <= n <= len(_NAMES):
        raise ValueError(f"between 1 and {len(_NAMES)} agents, not {n}")
    rng = random.Random(seed)
    names = rng.sample(_NAMES, n)
    return [
        Persona(
            name=name, occupation=rng.choice(_OCCUPATIONS), temperament=rng.choice(_TEMPERAMENTS)
        )
        for name in names
    ]


class Topology(BaseModel):
    """Undirected graph: agent i hears the messages of its neighbours (and its own)."""

    kind: TopologyKind
    n: int
    edges: list[tuple[int, int]] = Field(default_factory=list)

    def neighbours(self, i: int) -> set[int]:
        if self.kind == "full":
            return set(range(self.n)) - {i}
        return {b if a == i else a for a, b in self.edges if i in (a, b)}

    def audience(self, speaker: int) -> list[int]:
        """Who receives ``speaker``'s messages (undirected: its neighbours)."""
        return sorted(self.neighbours(speaker))


def build_topology(kind: TopologyKind, n: int, *, seed: int = 0, p: float = 0.5) -> Topology:
    """``full``: a shared chat; ``ring``: each hears its two neighbours; ``random``: an
    Erdos-Renyi graph G(n, p), with a ring added under it so that no agent is cut off."""
    if kind == "full":
        return Topology(kind=kind, n=n)
    ring = {tuple(sorted((i, (i + 1) % n))) for i in range(n)} if n > 1 else set()
    if n == 2:
        ring = {(0, 1)}
    if kind == "ring":
        return Topology(kind=kind, n=n, edges=sorted(ring))
    rng = random.Random(seed)
    extra = {(a, b) for a in range(n) for b in range(a + 1, n) if rng.random() < p}
    return Topology(kind=kind, n=n, edges=sorted(ring | extra))


def turn_order(n: int, rnd: int, order: TurnOrder, seed: int = 0) -> list[int]:
    """Who speaks when in round ``rnd`` (1-based)."""
    agents = list(range(n))
    if order == "shuffled":
        random.Random(seed * 1000 + rnd).shuffle(agents)
    return agents
