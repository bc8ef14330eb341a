"""Citation-based propagation: the output keeps the labels of the inputs it cites.

Citations are read from the output itself (``[doc:ID]``, where ID is an item id, an item name
or the 1-based number of a labeled input) or, when it has none, asked of the model in one
follow-up call over numbered sources. Every citation is checked against the text: the cited
item must share content words with the output, otherwise the citation is fake and the result
is the join. Uncited inputs that share an unexplained phrase with the output are put back
(see ``overlap``). No citations at all, or an unknown one, also gives the join.

Cost: 0 model calls when the output cites, 1 otherwise. Guarantee: none beyond the overlap
guard; a model that uses a source without citing it or quoting it is not caught.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Literal

from labelgate.guard.items import LabeledItem, LLMCall
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
from labelgate.guard.similarity import content_tokens

Mode = Literal["output", "ask", "auto"]

CITATION = re.compile(r"\[\s*(?:doc|source)\s*[:#]?\s*([^\]\s,;]+)\s*\]", re.IGNORECASE)
ASK_PROMPT = (
    "Sources:\n\n{sources}\n\nTask: {task}\n\nAnswer given: {output}\n\n"
    "Which sources did the answer use? Reply only with citations like [doc:1], "
    "or [doc:none] if it used none."
)


def parse_citations(text: str) -> list[str]:
    return [m.group(1) for m in CITATION.finditer(text)]


def resolve(ref: str, items: Sequence[LabeledItem]) -> LabeledItem | None:
    """A citation to an item: by id, by name, or by 1-based number."""
    for item in items:
        if ref == item.id or (item.name and ref.casefold() == item.name.casefold()):
            return item
    if ref.isdigit() and 1 <= int(ref) <= len(items):
        return items[int(ref) - 1]
    return None


def shared_content(output: str, item: LabeledItem) -> int:
    return len(set(content_tokens(output)) & set(content_tokens(item.text)))


class CitationPropagator:
    name = "citation"

    def __init__(
        self,
        model: ChatModel | None = None,
        *,
        mode: Mode = "auto",
        min_shared: int = 2,
        max_tokens: int = 24,
    ) -> None:
        self.model = model
        self.mode = mode
        self.min_shared = min_shared
        self.max_tokens = max_tokens

    async def propagate(self, call: LLMCall, output: str, lattice: Lattice) -> Propagation:
        started = time.perf_counter()
        items = labeled_items(call, lattice)
        refs, calls = await self._citations(call, output, lattice, items)
        done: RunFacts = {"propagator": self.name, "started": started, "model_calls": calls}
        if not refs:
            return fall_back(call, lattice, reason="no citations", **done)
        if refs == ["none"]:
            cited: list[LabeledItem] = []
        else:
            cited, problem = self._check(refs, items, output)
            if problem:
                return fall_back(call, lattice, reason=problem, **done)
        evidence = [
            Evidence(item_id=i.id, reason="cited, shares content", score=shared_content(output, i))
            for i in cited
        ]
        kept = [i for i in call.items if is_bottom(i, lattice)] + cited
        excluded = [i for i in items if i not in cited]
        for item, n in copied_from(output, kept, excluded):
            cited.append(item)
            evidence.append(Evidence(item_id=item.id, reason="uncited but copied", score=n))
        label = lattice.join_all([lattice.bottom, *(i.label for i in cited)])
        return conclude(
            call,
            lattice,
            label,
            output=output,
            evidence=evidence,
            reason="citations checked",
            **done,
        )

    async def _citations(
        self, call: LLMCall, output: str, lattice: Lattice, items: Sequence[LabeledItem]
    ) -> tuple[list[str], int]:
        refs = parse_citations(output) if self.mode != "ask" else []
        if refs or self.mode == "output" or self.model is None or not items:
            return refs, 0
        prompt = ASK_PROMPT.format(
            sources=numbered_sources(items), task=task_text(call, lattice), output=output
        )
        params = requery_params({}, self.max_tokens)
        reply = await self.model.chat([{"role": "user", "content": prompt}], **params)
        return parse_citations(reply.text), 1

    def _check(
        self, refs: Sequence[str], items: Sequence[LabeledItem], output: str
    ) -> tuple[list[LabeledItem], str]:
        cited: list[LabeledItem] = []
        need = min(self.min_shared, len(set(content_tokens(output)))) or 1
        for ref in refs:
            item = resolve(ref, items)
            if item is None:
                return [], f"citation {ref!r} names no input"
            if shared_content(output, item) < need:
                return [], f"citation {ref!r} shares no content with the output"
            if item not in cited:
                cited.append(item)
        return cited, ""
