"""The persistent chat memory: stored messages, retrieved by BM25 (``rank-bm25``).

After the discussion every message that the defense lets through is written here; fresh
agents later answer the questions with the top-k retrieved messages as their only context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rank_bm25 import BM25Okapi  # type: ignore[import-untyped]  # rank-bm25 ships no types

from labelgate.evals.spread.matching import normalise


@dataclass(slots=True)
class MemoryEntry:
    text: str
    speaker: str  # the agent id that wrote it
    meta: dict[str, Any] = field(default_factory=dict)


def _tokens(text: str) -> list[str]:
    return normalise(text).split()


class ChatMemory:
    def __init__(self) -> None:
        self.entries: list[MemoryEntry] = []
        self._index: BM25Okapi | None = None

    def add(self, text: str, speaker: str, **meta: Any) -> None:
        self.entries.append(MemoryEntry(text, speaker, dict(meta)))
        self._index = None  # rebuilt lazily: writes come in a batch, then the reads

    def __len__(self) -> int:
        return len(self.entries)

    def search(self, query: str, k: int = 3) -> list[MemoryEntry]:
        """The ``k`` best entries by BM25 score, ties in insertion order; none when empty."""
        if not self.entries or k <= 0:
            return []
        if self._index is None:
            # BM25Okapi divides by the corpus size; an empty token list stays a valid document.
            self._index = BM25Okapi([_tokens(e.text) or ["_"] for e in self.entries])
        scores = self._index.get_scores(_tokens(query))
        ranked = sorted(range(len(self.entries)), key=lambda i: (-scores[i], i))
        return [self.entries[i] for i in ranked[:k]]
