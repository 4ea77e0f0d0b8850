"""End to end in a real headless browser: Debian's chromium driven by Playwright, against
``enclave ui`` and ``enclave serve`` processes on loopback. Screenshots go to
``test-artifacts/ui/`` (``ENCLAVE_TEST_ARTIFACTS`` to change it)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.data.make_files import sample_spec, write_md
from tests.processes import env_for, free_port, start, stop, wait_ok
from tests.ui.conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("ENCLAVE_TEST_ARTIFACTS", "test-artifacts")) / "ui"
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def ui_url(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("ui") / "ui.log"
    ui = start(["ui", "--port", str(port)], env_for(stack.data, ENCLAVE_API_URL=stack.url), log)
    try:
        wait_ok(ui, f"http://127.0.0.1:{port}/_stcore/health", log, 120)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(ui)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "install Debian's chromium (`make setup` does)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    outbound: list[str] = []
    context.on(
        "request",
        lambda r: (
            outbound.append(r.url)
            if urlparse(r.url).hostname not in (None, "127.0.0.1", "localhost")
            and not r.url.startswith(("data:", "blob:"))
            else None
        ),
    )
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield page
    context.close()
    assert outbound == [], f"the UI made outbound requests: {outbound}"


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, url: str, key: str) -> None:
    page.goto(url)
    page.get_by_label("API key", exact=True).fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as")).to_be_visible()


def test_an_employee_asks_opens_the_cited_passage_and_gives_feedback(
    page: Page, ui_url: str, stack: Stack
) -> None:
    sign_in(page, ui_url, stack.user_key)
    shot(page, "1-signed-in")
    page.get_by_placeholder("Ask a question about your documents").fill(
        "How many days of annual leave do employees get?"
    )
    page.keyboard.press("Enter")
    answer = page.get_by_test_id("stChatMessage").nth(1)
    expect(answer).to_contain_text("25 days")
    chip = page.get_by_role("radio", name="[1] Annual Leave Policy")
    expect(chip).to_be_visible()  # the citation chip, once the answer is complete
    shot(page, "2-answer")

    chip.click()
    mark = page.locator(".enclave-passage mark")
    expect(mark).to_contain_text("25 days")
    page.get_by_role("button", name="Open the source document").click()
    download_button = page.get_by_role("button", name=re.compile(r"Download leave\.md"))
    with page.expect_download() as download:
        download_button.click()
    assert download.value.suggested_filename == "leave.md"
    shot(page, "3-citation-opened")

    page.get_by_role("radio", name="Thumbs up").click()
    expect(page.get_by_text("Feedback recorded.")).to_be_visible()
    comment = page.get_by_label("Tell us more (optional)")
    comment.fill("Clear and cited")
    comment.press("Enter")
    expect(page.get_by_text("Feedback recorded. Comment saved.")).to_be_visible()
    shot(page, "4-feedback")


def test_an_admin_uploads_a_file_and_sees_it_listed(
    page: Page, ui_url: str, stack: Stack, tmp_path: Path
) -> None:
    upload = write_md(tmp_path / "travel-policy.md", sample_spec("travel"))
    sign_in(page, ui_url, stack.admin_key)
    page.get_by_test_id("stSidebar").get_by_text("Ingestion", exact=True).click()
    page.locator("input[type=file]").set_input_files(str(upload))
    page.get_by_label("Groups (comma-separated)").first.fill("staff")
    page.get_by_role("button", name="Start ingestion").first.click()
    expect(page.get_by_text("All 1 file ingested")).to_be_visible()
    shot(page, "5-ingested")

    page.get_by_test_id("stSidebar").get_by_text("Documents", exact=True).click()
    page.get_by_label("Search title or source").fill("travel")
    page.keyboard.press("Enter")
    expect(page.get_by_text(re.compile(r"^1 of \d+ documents$"))).to_be_visible()
    page.get_by_test_id("stForm").get_by_test_id("stMultiSelect").click()
    expect(page.get_by_role("option", name=re.compile("travel-policy.md"))).to_be_visible()
    shot(page, "6-documents")
