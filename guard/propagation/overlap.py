"""Content overlap between an output and its inputs: the cheap guard of the heuristic
propagators (citation, similarity, introspection).

An input that shares a distinctive phrase with the output that the kept context does not
explain was very likely copied from: it is put back, whatever the model or the heuristic said.
This catches verbatim and near-verbatim influence; it cannot see influence without shared
words (an instruction such as "answer only OK"), which only the counterfactual propagator's
leave-one-out check detects.
"""

from __future__ import annotations

from collections.abc import Sequence

from labelgate.guard.items import LabeledItem
from labelgate.guard.similarity import content_tokens, ngrams


def kept_vocabulary(items: Sequence[LabeledItem]) -> set[str]:
    vocab: set[str] = set()
    for item in items:
        vocab.update(content_tokens(item.text))
    return vocab


def unexplained_bigrams(output: str, kept: Sequence[LabeledItem]) -> set[tuple[str, ...]]:
    """Content bigrams of the output that the kept items do not contain."""
    kept_grams: set[tuple[str, ...]] = set()
    for item in kept:
        kept_grams |= ngrams(content_tokens(item.text), 2)
    return ngrams(content_tokens(output), 2) - kept_grams


def copied_from(
    output: str, kept: Sequence[LabeledItem], excluded: Sequence[LabeledItem]
) -> list[tuple[LabeledItem, int]]:
    """Excluded items sharing an unexplained content bigram with the output, with the count."""
    loose = unexplained_bigrams(output, kept)
    found = []
    for item in excluded:
        shared = len(loose & ngrams(content_tokens(item.text), 2))
        if shared:
            found.append((item, shared))
    return found
