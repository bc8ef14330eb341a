"""The audit UI in a real headless browser (Debian's chromium driven by playwright): pages
render, filters work through the form, the span tree folds, an injected <script> never runs.
Screenshots are saved under the test's tmp dir (``ui-*.png``), and copied to
``$LABELGATE_UI_SHOTS`` when it is set (how docs/img/ was made)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from proxy_fixtures import *  # noqa: F403 - fixtures
from proxy_fixtures import ServerThread
from trace_fixtures import *  # noqa: F403 - fixtures
from trace_fixtures import AuditData

from labelgate.proxy.ui.app import create_ui_app

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

# CI (.ci/run installs chromium) runs them, never skips: a missing browser fails there.
pytestmark = [
    pytest.mark.slow,  # a browser start per test: seconds
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("CI"),
        reason="needs /usr/bin/chromium (apt-get install chromium)",
    ),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip)")


@pytest.fixture
def ui_url(audit_db: AuditData) -> Iterator[str]:
    server = ServerThread(create_ui_app(audit_db.path)).start()
    yield server.url
    server.stop()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.errors = errors  # type: ignore[attr-defined]
        yield page
        browser.close()


def shot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"ui-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one
    keep = os.environ.get("LABELGATE_UI_SHOTS")
    if keep:
        shutil.copy(path, Path(keep) / path.name)
    return path


def test_trace_list_filter_and_open_a_denial(
    page: Any, ui_url: str, audit_db: AuditData, tmp_path: Path
) -> None:
    page.goto(f"{ui_url}/")
    assert page.url.endswith("/traces")
    rows = page.locator("#traces tbody tr")
    assert rows.count() == 5
    shot(page, tmp_path, "traces")
    page.select_option("select[name=decision]", "deny")
    page.click("button[type=submit]")
    page.wait_for_url("**decision=deny**")
    assert rows.count() == 1 and "mailer" in rows.first.inner_text()
    page.fill("input[name=q]", "Lisbon")
    page.select_option("select[name=decision]", "")
    page.click("button[type=submit]")
    page.wait_for_url("**q=Lisbon**")
    assert rows.count() == 1 and "allow" in rows.first.inner_text()

    page.goto(f"{ui_url}/traces/{audit_db.denied_request}")
    decision = page.locator(".decision.deny").first
    assert decision.is_visible()
    assert "baseline:untrusted-side-effect" in decision.inner_text()
    assert page.locator(".chain tr.decisive").first.is_visible()
    evidence = page.locator(".evidence", has_text="fingerprint").first
    assert evidence.is_visible()
    shot(page, tmp_path, "trace-denied")
    summary = page.locator("#span-tree > li > details > summary").first
    summary.click()  # fold the span: its decisions are hidden
    assert not decision.is_visible()
    assert page.errors == []  # type: ignore[attr-defined]


def test_injected_script_is_text_and_never_runs(
    page: Any, ui_url: str, audit_db: AuditData, tmp_path: Path
) -> None:
    page.goto(f"{ui_url}/traces/{audit_db.script_request}")
    assert page.title() != "pwned" and page.title().startswith("trace ")
    text = page.locator("pre.content", has_text="<script>").first
    assert "<script>document.title='pwned'" in text.inner_text()
    assert page.locator("main script").count() == 0
    shot(page, tmp_path, "script-as-text")


def test_eval_run_sample_and_its_span_tree(
    page: Any, ui_url: str, audit_db: AuditData, tmp_path: Path
) -> None:
    page.goto(f"{ui_url}/runs")
    page.click(f"text={audit_db.run_id}")
    assert page.locator("#samples tbody tr").count() >= 2
    shot(page, tmp_path, "run")
    page.click(f"#samples >> text={audit_db.sample_id}")
    assert "Which action do you choose?" in page.locator("#transcript").inner_text()
    assert "choice" in page.locator("#scores").inner_text()
    shot(page, tmp_path, "sample")
    page.click("text=span tree")
    focus = page.locator("details.span.focus")
    assert focus.count() == 1 and "eval.sample" in focus.locator("summary").first.inner_text()
    shot(page, tmp_path, "eval-trace")
