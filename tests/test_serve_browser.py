"""The live status page of `ocrq serve` in a real headless Chromium (Debian's
/usr/bin/chromium, driven by Playwright; Playwright never downloads a browser here): it
loads, asks for the token when it has none, follows a submitted document's progress to
done, and shows a failed job's reason. The screenshot is left in the test's temp folder
(and copied to $OCRQ_SCREENSHOT when that is set) for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture says so and skips
    expect = None

from tests.fixtures_pdf import scan_pdf
from tests.fixtures_text import render_page
from tests.test_serve import TOKEN, Served

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
LOCAL_MODE = re.compile(r"^local mode")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def _missing() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is missing: `apt-get install -y chromium`"
    if expect is None:
        return "Python playwright is not installed: `pip install playwright`"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI installs both: a skip would hide a regression
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with Served(tmp_path_factory.mktemp("serve-page"), "--local", "-w", "1") as server:
        yield server


def _slow_pages(count: int, tag: str) -> list:
    """Pages with many lines: a second or more each, so the page sees them running."""
    return [
        render_page([f"{tag} page {p + 1} line {n}: parcel ledger copper" for n in range(30)], 30)
        for p in range(count)
    ]


def test_status_page_asks_for_the_token(browser, served):
    page = browser.new_page()
    try:
        page.goto(served.url + "/")
        expect(page.locator("#login")).to_be_visible(timeout=15_000)
        expect(page.locator("#mode")).to_have_text("token needed")
        page.fill("#token", TOKEN)
        page.click("#login button")
        expect(page.locator("#mode")).to_have_text(LOCAL_MODE, timeout=15_000)
        assert page.is_hidden("#login")
    finally:
        page.close()


def test_status_page_follows_a_document_to_done_and_shows_failures(browser, served, tmp_path):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
    try:
        # the token in the fragment: kept in the tab, never sent to the server as such
        page.goto(f"{served.url}/#token={TOKEN}")
        expect(page.locator("#mode")).to_have_text(LOCAL_MODE, timeout=15_000)
        assert "token" not in page.url
        assert page.text_content("#workers tbody").startswith("local-0")

        pdf = scan_pdf(_slow_pages(3, "Harbour"))
        files = [
            ("files", ("harbour.pdf", pdf, "application/pdf")),
            ("files", ("broken.pdf", b"this is not a PDF at all\n" * 10, "application/pdf")),
        ]
        with served.client() as client:
            answer = client.post("/batch_infer", files=files)
        assert answer.status_code == 202, answer.text
        docs = {d["name"]: d["id"] for d in answer.json()["documents"]}
        row = f"[data-doc-id='{docs['harbour.pdf']}']"

        # progress: seen part-way (open, fewer than 3 pages), then done with 3 of 3
        page.wait_for_selector(row, timeout=15_000)
        seen: list[tuple[str, str]] = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            state = (page.text_content(f"{row} .doc-status"), page.text_content(f"{row} .pages"))
            if not seen or seen[-1] != state:
                seen.append(state)
                if state[0] == "open" and not state[1].startswith("0 "):
                    page.screenshot(path=str(tmp_path / "status-running.png"), full_page=True)
            if state[0] == "done":
                break
            page.wait_for_timeout(100)
        assert seen[-1] == ("done", "3 / 3 pages"), seen
        assert any(status == "open" and pages != "3 / 3 pages" for status, pages in seen), seen
        bar = page.get_attribute(f"{row} [role=progressbar]", "aria-valuenow")
        assert bar == "3"

        # the failed document: its badge, and its reason in the failures table
        broken = f"[data-doc-id='{docs['broken.pdf']}']"
        expect(page.locator(f"{broken} .doc-status")).to_have_text("failed", timeout=60_000)
        reason = page.text_content(f"#failures tr[data-job-id='{docs['broken.pdf']}'] .reason")
        assert "not a readable PDF: no %PDF header (looks like text)" in reason
        assert page.is_hidden("#no-failures")

        # figures that move: pages done, pages/s
        assert int(page.text_content("#tile-done b")) >= 3
        assert float(page.text_content("#tile-rate b")) > 0

        shot = tmp_path / "status.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if os.environ.get("OCRQ_SCREENSHOT"):
            keep = Path(os.environ["OCRQ_SCREENSHOT"])
            shutil.copy(shot, keep)
            running = tmp_path / "status-running.png"
            if running.exists():
                shutil.copy(running, keep.with_name(keep.stem + "-running" + keep.suffix))
        assert not errors, errors
    finally:
        page.close()


def test_api_docs_load_with_nothing_from_other_sites(browser, served, tmp_path):
    """Swagger UI renders the API from this server's own files: every request for
    another origin is refused (and recorded), as on a machine without internet."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    outside: list[str] = []
    errors: list[str] = []

    def only_here(route) -> None:
        if route.request.url.startswith(served.url + "/"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_here)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(served.url + "/docs")
        operation = page.locator(".opblock-summary-path[data-path='/infer']")
        expect(operation).to_be_visible(timeout=30_000)
        expect(
            page.locator(".opblock-summary-path[data-path='/documents/{doc_id}']")
        ).to_be_visible()
        page.screenshot(path=str(tmp_path / "docs.png"), full_page=True)
        assert not outside, outside
        assert not errors, errors
    finally:
        page.close()
