"""Counterfactual sub-context re-query: the seed paper's prompt-based propagator (Algorithm 1)
with a leave-one-out soundness check.

0. Leave-one-out first (``strategy="loo_first"``, the default): for every non-bottom input,
   re-query with all the context except that input; an input whose removal makes the answer
   dissimilar is influential, and the join of the influential labels is a *floor*: no
   candidate below it can survive step 3, so the search skips them without a call. These are
   exactly the calls step 3 would make for the inputs a candidate drops (memoised, so step 3
   then costs nothing), and in an agent context with several labeled results, where the plain
   bottom-up search would re-query every small subset of irrelevant results first, it is what
   keeps the search inside its budget. ``strategy="search_first"`` is the paper's order.
1. Group the non-bottom inputs by label. The candidate output labels are the joins of subsets
   of these distinct labels; a candidate's sub-context is every item whose label flows to it
   (bottom items always do).
2. Visit candidates from the bottom of the lattice upward (a linear extension: by how many
   distinct input labels flow to the candidate, then most permissive first), skipping those
   above an accepted one. Re-query the model on the candidate's sub-context; accept when the
   answer is similar to the original output. The first accepted candidate is minimal.
3. Leave-one-out: for every item the accepted label drops, re-query with *all* context except
   that item; if the answer is no longer similar, the item is influential and its label is
   joined back in.
4. Copy guard (no model call): a dropped item sharing a content phrase with the output that
   the kept context does not contain is joined back in. A similarity threshold below 1 lets a
   short copied fact (a code, a number) pass as "the same answer" when its source is removed;
   this stops that leak.

Guarantee (greedy decoding, temperature 0, seed 0, a deterministic model): the returned label
(a) has a sub-context whose answer is similar to the output, or is the join; and (b) omits no
item whose single removal makes the answer dissimilar, "similar" being the configured
similarity. Items whose influence is only joint (two redundant copies of a fact) may both be
dropped: each is individually unnecessary. If the full context does not reproduce the output
(sampling, another model, a nondeterministic backend) or the call budget runs out, the result
is the join.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

from labelgate.guard.items import LabeledItem, LLMCall
from labelgate.guard.labels import Label, Lattice
from labelgate.guard.models import ChatModel
from labelgate.guard.propagation.base import (
    BudgetExceeded,
    Evidence,
    Propagation,
    Requery,
    conclude,
    fall_back,
    labeled_items,
)
from labelgate.guard.propagation.overlap import copied_from
from labelgate.guard.similarity import Similarity

Verify = Literal["item", "group", "none"]
Strategy = Literal["loo_first", "search_first"]


def distinct_labels(items: Sequence[LabeledItem]) -> list[Label]:
    seen: list[Label] = []
    for item in items:
        if item.label not in seen:
            seen.append(item.label)
    return seen


def permissiveness(label: Label) -> tuple[int, int, int, int, int, tuple[str, ...]]:
    """Sort key: lower is more permissive (less confidential, more trusted, fewer tags)."""
    readers = 0 if label.readers is None else 10_000 - len(label.readers)
    return (
        label.confidentiality.rank,
        -label.integrity.rank,
        len(label.categories),
        readers,
        len(label.sources),
        tuple(sorted(label.sources)),
    )


def candidate_labels(groups: Sequence[Label], bottom: Label, limit: int) -> list[Label] | None:
    """Every join of a subset of ``groups``, bottom first in a linear extension of the order.

    ``None`` when there are more than ``limit`` distinct joins (the search would be hopeless).
    """
    joins: set[Label] = {bottom}
    for group in groups:
        joins |= {j | group for j in joins}
        if len(joins) > limit:
            return None

    def height(label: Label) -> int:
        return sum(g.flows_to(label) for g in groups)

    return sorted(joins, key=lambda c: (height(c), permissiveness(c)))


class CounterfactualPropagator:
    name = "counterfactual"

    def __init__(
        self,
        model: ChatModel,
        *,
        similarity: Similarity | None = None,
        budget: int = 24,
        verify: Verify = "item",
        strategy: Strategy = "loo_first",
        check_full: bool = True,
        copy_guard: bool = True,
        max_candidates: int = 256,
        max_tokens: int | None = None,
    ) -> None:
        self.model = model
        self.similarity = similarity or Similarity()
        self.budget = budget
        self.verify = verify
        self.strategy = strategy
        self.check_full = check_full
        self.copy_guard = copy_guard
        self.max_candidates = max_candidates
        self.max_tokens = max_tokens

    async def propagate(self, call: LLMCall, output: str, lattice: Lattice) -> Propagation:
        started = time.perf_counter()
        requery = Requery(self.model, call, budget=self.budget, max_tokens=self.max_tokens)
        evidence: list[Evidence] = []
        try:
            label, why = await self._search(call, output, lattice, requery, evidence)
            if label is not None:
                label = await self._verify(call, output, lattice, requery, label, evidence)
                label = self._guard_copies(call, output, lattice, label, evidence)
        except BudgetExceeded as exc:
            why, label = str(exc), None
        if label is None:
            return fall_back(
                call,
                lattice,
                propagator=self.name,
                started=started,
                reason=why,
                evidence=evidence,
                model_calls=requery.calls,
            )
        return conclude(
            call,
            lattice,
            label,
            output=output,
            propagator=self.name,
            started=started,
            evidence=evidence,
            model_calls=requery.calls,
            reason=why,
        )

    async def _search(
        self,
        call: LLMCall,
        output: str,
        lattice: Lattice,
        requery: Requery,
        evidence: list[Evidence],
    ) -> tuple[Label | None, str]:
        """The most permissive candidate whose sub-context reproduces the output."""
        groups = distinct_labels(labeled_items(call, lattice))
        if not groups:
            return lattice.bottom, "no labeled inputs"
        if self.check_full:
            again = await requery.answer(call.items)
            if not self.similarity.same(again, output):
                return None, "the full context does not reproduce the output"
        candidates = candidate_labels(groups, lattice.bottom, self.max_candidates)
        if candidates is None:
            return None, f"more than {self.max_candidates} candidate labels"
        full = candidates[-1]
        if self.strategy == "loo_first" and self.verify == "item":
            floor = await self._loo_floor(call, output, lattice, requery, evidence)
            candidates = [c for c in candidates if floor.flows_to(c)]
        accepted = await self._first_accepted(call, output, candidates[:-1], requery, evidence)
        if accepted is None:
            return full, "no smaller sub-context reproduces the output"
        return accepted, f"sub-context reproduces the output ({self.similarity.describe()})"

    async def _loo_floor(
        self,
        call: LLMCall,
        output: str,
        lattice: Lattice,
        requery: Requery,
        evidence: list[Evidence],
    ) -> Label:
        """The join of every input whose single removal changes the output (for the inputs
        the search then drops, ``_verify`` repeats these calls from the memo)."""
        floor = lattice.bottom
        for item in labeled_items(call, lattice):
            answer = await requery.answer([i for i in call.items if i.id != item.id])
            score = self.similarity.score(answer, output)
            if score < self.similarity.threshold:
                floor = floor | item.label
                reason = "leave-one-out changes the output: kept"
                evidence.append(Evidence(item_id=item.id, reason=reason, score=score))
        return floor

    async def _first_accepted(
        self,
        call: LLMCall,
        output: str,
        candidates: Sequence[Label],
        requery: Requery,
        evidence: list[Evidence],
    ) -> Label | None:
        for candidate in candidates:
            keep = [i for i in call.items if i.label.flows_to(candidate)]
            answer = await requery.answer(keep)
            score = self.similarity.score(answer, output)
            if score >= self.similarity.threshold:
                for item in keep:
                    evidence.append(
                        Evidence(item_id=item.id, reason="in the accepted sub-context", score=score)
                    )
                return candidate
        return None

    async def _verify(
        self,
        call: LLMCall,
        output: str,
        lattice: Lattice,
        requery: Requery,
        label: Label,
        evidence: list[Evidence],
    ) -> Label:
        """Leave-one-out: join back every dropped item whose removal changes the output."""
        if self.verify == "none":
            return label
        dropped = [i for i in labeled_items(call, lattice) if not i.label.flows_to(label)]
        for unit in self._units(dropped):
            ids = {i.id for i in unit}
            answer = await requery.answer([i for i in call.items if i.id not in ids])
            score = self.similarity.score(answer, output)
            influential = score < self.similarity.threshold
            reason = (
                "leave-one-out changes the output: kept"
                if influential
                else "leave-one-out keeps the output: dropped"
            )
            evidence.extend(Evidence(item_id=i.id, reason=reason, score=score) for i in unit)
            if influential:
                for item in unit:
                    label = label | item.label
        return label

    def _guard_copies(
        self, call: LLMCall, output: str, lattice: Lattice, label: Label, evidence: list[Evidence]
    ) -> Label:
        if not self.copy_guard:
            return label
        kept = [i for i in call.items if i.label.flows_to(label)]
        dropped = [i for i in labeled_items(call, lattice) if not i.label.flows_to(label)]
        for item, shared in copied_from(output, kept, dropped):
            evidence.append(
                Evidence(item_id=item.id, reason="copied into the output", score=shared)
            )
            label = label | item.label
        return label

    def _units(self, dropped: Sequence[LabeledItem]) -> list[list[LabeledItem]]:
        if self.verify == "item":
            return [[i] for i in dropped]
        return [[i for i in dropped if i.label == g] for g in distinct_labels(dropped)]
