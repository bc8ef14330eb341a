"""``guard.copied_run_words``: a short excerpt of a confidential document, pasted into an
agent's prompt among other words, is re-identified by its copied run (the default, 8 words);
with the setting null, only by share, and ten words of a long document are not enough."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from proxy_fixtures import *  # noqa: F403 - fixtures
from proxy_fixtures import Guarded, passthrough_config, sdk

DOCUMENT = (
    "The board approved the acquisition of Lindqvist Traders for 41 million euros on the "
    "condition that the deal closes before the end of the third quarter. Legal will review "
    "the non-compete clauses of the three founders before anything is signed. The payroll "
    "team must not learn of the salary bands until the integration plan is final, and the "
    "press release stays embargoed until the regulator has confirmed the filing."
)
EXCERPT = "Legal will review the non-compete clauses of the three founders"


@pytest.mark.parametrize(("run_words", "found"), [(8, True), (None, False)])
def test_a_ten_word_excerpt_is_found_by_its_copied_run(
    start_guarded: Callable[..., Guarded], fake_url: str, run_words: int | None, found: bool
) -> None:
    proxy = start_guarded(passthrough_config(fake_url), guard={"copied_run_words": run_words})
    stored = httpx.post(
        f"{proxy.url}/labelgate/documents",
        json=[
            {
                "text": DOCUMENT,
                "source": "board/minutes",
                "label": {"confidentiality": "confidential"},
            }
        ],
    )
    assert stored.status_code == 200, stored.text
    prompt = f"Can you tidy up this sentence for the newsletter? {EXCERPT}. Thanks a lot!"
    raw: Any = sdk(proxy.url).chat.completions.with_raw_response.create(
        model="fake-chat", messages=[{"role": "user", "content": prompt}]
    )
    label = json.loads(raw.headers["x-labelgate-label"])
    assert (label["confidentiality"] == "confidential") is found
