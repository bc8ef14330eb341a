"""Similarity attribution: keep the inputs the output's content words come from.

No model calls. The output's *novel* content words are those the bottom-labeled context (the
user's question, the system prompt) does not already contain. Each labeled input scores the
share of the novel words it contains; inputs at or above ``threshold`` are kept, and so is any
input sharing an unexplained content phrase with the output (the overlap guard). If more than
``max_unattributed`` of the novel words are found in no kept input, the output says things the
evidence cannot place and the result is the join.

Guarantee: none beyond the overlap guard; influence without shared words (an injected
instruction that changes the answer's form) is invisible to it.
"""

from __future__ import annotations

import time

from labelgate.guard.items import LabeledItem, LLMCall
from labelgate.guard.labels import Lattice
from labelgate.guard.propagation.base import (
    Evidence,
    Propagation,
    RunFacts,
    conclude,
    fall_back,
    is_bottom,
    labeled_items,
)
from labelgate.guard.propagation.overlap import copied_from, kept_vocabulary
from labelgate.guard.similarity import content_tokens


class SimilarityPropagator:
    name = "similarity"

    def __init__(self, *, threshold: float = 0.2, max_unattributed: float = 0.5) -> None:
        self.threshold = threshold
        self.max_unattributed = max_unattributed

    async def propagate(self, call: LLMCall, output: str, lattice: Lattice) -> Propagation:
        started = time.perf_counter()
        base = [i for i in call.items if is_bottom(i, lattice)]
        novel = set(content_tokens(output)) - kept_vocabulary(base)
        items = labeled_items(call, lattice)
        kept: list[LabeledItem] = []
        evidence: list[Evidence] = []
        for item in items:
            score = len(novel & set(content_tokens(item.text))) / len(novel) if novel else 0.0
            if novel and score >= self.threshold:
                kept.append(item)
                evidence.append(Evidence(item_id=item.id, reason="output words", score=score))
        excluded = [i for i in items if i not in kept]
        for item, n in copied_from(output, base + kept, excluded):
            kept.append(item)
            evidence.append(Evidence(item_id=item.id, reason="shares a phrase", score=n))
        unattributed = novel - kept_vocabulary(base + kept)
        share = len(unattributed) / len(novel) if novel else 0.0
        done: RunFacts = {"propagator": self.name, "started": started}
        if share > self.max_unattributed:
            reason = f"{share:.0%} of the output's new words come from no input"
            return fall_back(call, lattice, reason=reason, evidence=evidence, **done)
        label = lattice.join_all([lattice.bottom, *(i.label for i in kept)])
        reason = f"{share:.0%} unattributed"
        return conclude(
            call, lattice, label, output=output, reason=reason, evidence=evidence, **done
        )
