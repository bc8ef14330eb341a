"""Introspection, the seed paper's baseline: ask the model which inputs it used.

One follow-up call lists the labeled inputs as numbered sources with the task and the answer,
and asks for the numbers used (or "none"). A reply that names no number and does not say
"none", or names a number that does not exist, falls back to the join. Inputs sharing an
unexplained phrase with the output are put back whatever the model said (the overlap guard).

Cost: 1 model call. Guarantee: none beyond the overlap guard; a model may simply be wrong
about what it used, and a hijacked one may lie.
"""

from __future__ import annotations

import re
import time

from labelgate.guard.items import LLMCall
from labelgate.guard.labels import Lattice
from labelgate.guard.models import ChatModel
from labelgate.guard.propagation.base import (
    Evidence,
    Propagation,
    RunFacts,
    conclude,
    fall_back,
    is_bottom,
    labeled_items,
    numbered_sources,
    requery_params,
    task_text,
)
from labelgate.guard.propagation.overlap import copied_from

PROMPT = (
    "Sources:\n\n{sources}\n\nTask: {task}\n\nAnswer given: {output}\n\n"
    "Which numbered sources did the answer use? Reply only with the numbers separated by "
    "commas, for example: 1, 3. Reply none if it used no source."
)
_NUMBER = re.compile(r"\b(\d{1,3})\b")
_NONE = re.compile(r"\bnone\b|\bno sources?\b", re.IGNORECASE)


def parse_used(reply: str, count: int) -> list[int] | None:
    """1-based source numbers named in the reply; [] for "none"; None when unparseable."""
    numbers = [int(n) for n in _NUMBER.findall(reply)]
    if not numbers:
        return [] if _NONE.search(reply) else None
    if any(not 1 <= n <= count for n in numbers):
        return None
    return sorted(set(numbers))


class IntrospectionPropagator:
    name = "introspection"

    def __init__(self, model: ChatModel, *, max_tokens: int = 16) -> None:
        self.model = model
        self.max_tokens = max_tokens

    async def propagate(self, call: LLMCall, output: str, lattice: Lattice) -> Propagation:
        started = time.perf_counter()
        items = labeled_items(call, lattice)
        if not items:
            return conclude(
                call,
                lattice,
                lattice.bottom,
                output=output,
                propagator=self.name,
                started=started,
                reason="no labeled inputs",
            )
        prompt = PROMPT.format(
            sources=numbered_sources(items), task=task_text(call, lattice), output=output
        )
        reply = await self.model.chat(
            [{"role": "user", "content": prompt}], **requery_params({}, self.max_tokens)
        )
        done: RunFacts = {"propagator": self.name, "started": started, "model_calls": 1}
        used = parse_used(reply.text, len(items))
        if used is None:
            return fall_back(call, lattice, reason=f"unparseable reply {reply.text!r:.80}", **done)
        kept = [items[n - 1] for n in used]
        evidence = [Evidence(item_id=i.id, reason="the model says it used it") for i in kept]
        base = [i for i in call.items if is_bottom(i, lattice)]
        for item, n in copied_from(output, base + kept, [i for i in items if i not in kept]):
            kept.append(item)
            evidence.append(Evidence(item_id=item.id, reason="not named but copied", score=n))
        label = lattice.join_all([lattice.bottom, *(i.label for i in kept)])
        return conclude(
            call,
            lattice,
            label,
            output=output,
            evidence=evidence,
            reason="model's own account",
            **done,
        )
