"""Texts in flight: what a reader already has of a text whose label is not final yet.

A streamed answer reaches its reader as it is generated, but its label is decided, and its
fingerprints stored (so that it keeps that label when it comes back), only when it ends.
Meanwhile its reader may already hand part of it to another agent. Labeling that relay cannot
wait for the stream's end: streams last seconds, and every request sharing a phrase with one
would queue behind it. So the relaying item is labeled at once with the most the streamed
text's label can be, the join of the inputs of the call that writes it (an output's label is
never more than that): for the stream's lifetime a relay may be over-labeled, never
under-labeled. Once the stream ends, its answer is stored with its real label and found as
any other answer.

A relay is recognised the way the fingerprint store recognises a stored text, with what has
gone out so far standing for the text: the relaying text shares at least ``min_matches``
fingerprints with it (all of its own, when it has fewer). What has gone out is hashed
incrementally (``GrowingText``), and only when something is labeled while it is in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Set

from labelgate.guard.fingerprint.winnow import GrowingText, WinnowParams
from labelgate.guard.items import LabelOrigin, LabelReason
from labelgate.guard.labels import Label


class TextInFlight:
    """A text its reader is receiving before its label is final (a streamed answer)."""

    def __init__(
        self,
        sent: Callable[[], list[str]],
        bound: Label,
        *,
        ref: str,
        reader: str | None,
        params: WinnowParams,
    ) -> None:
        self._sent = sent  # what has gone out so far: one text per choice (no k-gram spans two)
        self.bound = bound  # the most its label can be
        self.ref = ref  # the request writing it, for the audit trail
        self.reader = reader
        self._params = params
        self._growing: list[GrowingText] = []

    def hashes(self) -> set[int]:
        """The k-gram hashes of what has gone out so far (every one, not only winnowed)."""
        texts = self._sent()
        while len(self._growing) < len(texts):
            self._growing.append(GrowingText(self._params))
        hashes = [grown.hashes(text) for grown, text in zip(self._growing, texts, strict=False)]
        return hashes[0] if len(hashes) == 1 else set().union(*hashes)

    def relayed_in(self, fingerprints: Set[int], min_matches: int) -> int:
        """How many of a text's ``fingerprints`` come from what has gone out, when that is
        enough to call the text a relay of it (else 0)."""
        if not fingerprints:
            return 0
        sent = self.hashes()
        shared = sum(1 for h in fingerprints if h in sent)
        return shared if shared >= min(min_matches, len(fingerprints)) else 0

    def provenance(self, shared: int) -> LabelReason:
        reader = f" to {self.reader}" if self.reader else ""
        detail = (
            f"shares {shared} fingerprints with an answer still streaming{reader}; labeled "
            "with the most that answer can carry (the join of its inputs) until it ends"
        )
        return LabelReason(LabelOrigin.FINGERPRINT, detail, ref=self.ref)
