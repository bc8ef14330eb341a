"""The conservative propagator: the output gets the join of every input label."""

from __future__ import annotations

import time

from labelgate.guard.items import LLMCall
from labelgate.guard.labels import Lattice
from labelgate.guard.propagation.base import (
    Evidence,
    Propagation,
    conclude,
    join_label,
    labeled_items,
)


class JoinPropagator:
    """No model calls, always sound, and prone to label creep."""

    name = "join"

    async def propagate(self, call: LLMCall, output: str, lattice: Lattice) -> Propagation:
        started = time.perf_counter()
        evidence = [
            Evidence(item_id=i.id, reason="conservative join keeps every input")
            for i in labeled_items(call, lattice)
        ]
        return conclude(
            call,
            lattice,
            join_label(call, lattice),
            output=output,
            propagator=self.name,
            started=started,
            evidence=evidence,
            reason="join of all input labels",
        )
