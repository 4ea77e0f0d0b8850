"""End to end in a real headless browser: Debian's chromium driven by Playwright, against
``enclave ui`` and ``enclave serve`` processes on loopback. Screenshots go to
``test-artifacts/ui/`` (``ENCLAVE_TEST_ARTIFACTS`` to change it)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from core.settings import Settings
from serving.cli.launcher import sign_in_link
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


EXFIL_HOST = "203.0.113.9"  # TEST-NET-3: nothing answers there, and nothing may ask it
EXFIL = f"""Badge policy ![logo](http://{EXFIL_HOST}/logo.png)

Visitor badges are returned at reception before leaving ![badge](http://{EXFIL_HOST}/p.png?d=1)
<img src="http://{EXFIL_HOST}/img.png"> and the badge office is at http://{EXFIL_HOST}/page
"""
"""Plain text, so parsing keeps the markup: the title (citation chips, passage headers) and
the passages carry remote images and links. (The extractive test LLM quotes sentences cut
at every '.', '!' and '?', so it cannot repeat a URL: model output is covered by
tests/unit/test_ui_safe.py.)"""


@dataclass(frozen=True)
class Ui:
    url: str
    sign_in_token: str
    grant: Path


@pytest.fixture(scope="module")
def ui(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    port = free_port()
    folder = tmp_path_factory.mktemp("ui")
    log = folder / "ui.log"
    token, grant = sign_in_link(Settings(data_dir=folder), stack.admin_key)
    env = env_for(stack.data, ENCLAVE_API_URL=stack.url, ENCLAVE_UI_SIGNIN_FILE=str(grant))
    ui = start(["ui", "--port", str(port)], env, log)
    try:
        wait_ok(ui, f"http://127.0.0.1:{port}/_stcore/health", log, 120)
        yield Ui(f"http://127.0.0.1:{port}", token, grant)
    finally:
        stop(ui)


@pytest.fixture(scope="module")
def ui_url(ui: Ui) -> str:
    return ui.url


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
    blocked: list[str] = []  # Content-Security-Policy violations: the UI itself must cause none
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
    page.on(
        "console",
        lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
    )
    yield page
    context.close()
    assert outbound == [], f"the UI made outbound requests: {outbound}"
    assert blocked == [], f"the Content-Security-Policy blocked: {blocked}"


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


def test_nothing_a_document_or_the_model_writes_makes_the_browser_call_out(
    page: Page, ui_url: str, stack: Stack
) -> None:
    admin = {"Authorization": f"Bearer {stack.admin_key}"}
    started = httpx.post(
        f"{stack.url}/v1/documents",
        headers=admin,
        files=[("files", ("badges.txt", EXFIL.encode(), "text/plain"))],
        data={"groups": "staff"},
    )
    assert started.status_code == 202, started.text
    job_url = f"{stack.url}/v1/jobs/{started.json()['job_id']}"
    for _ in range(600):
        job = httpx.get(job_url, headers=admin).json()
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.1)
    assert job["status"] == "done", job

    response = page.goto(ui_url)
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "img-src 'self' data: blob:" in policy
    page.get_by_label("API key", exact=True).fill(stack.user_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as")).to_be_visible()
    page.get_by_placeholder("Ask a question about your documents").fill(
        "Where are visitor badges returned before leaving?"
    )
    page.keyboard.press("Enter")
    answer = page.get_by_test_id("stChatMessage").nth(1)
    expect(answer).to_contain_text("Visitor badges are returned at reception")
    chip = page.get_by_role("radio", name=re.compile(r"\[1\] Badge policy"))
    expect(chip).to_contain_text(f"{EXFIL_HOST}/logo.png")  # the title, as text
    chip.click()
    expect(page.locator(".enclave-passage")).to_contain_text("Visitor badges")
    page.get_by_text("Retrieved passages").click()
    shot(page, "7-hostile-markdown")
    # the markup shows as text: no image, no link to that host anywhere on the page
    assert page.locator(f"img[src*='{EXFIL_HOST}']").count() == 0
    assert page.locator(f"a[href*='{EXFIL_HOST}']").count() == 0
    # (the page fixture fails the test on any request that leaves loopback)


def test_the_one_time_sign_in_link_signs_in_once(browser: Browser, ui: Ui) -> None:
    link = f"{ui.url}/?signin={ui.sign_in_token}"
    first = browser.new_context()
    try:
        page = first.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(link)
        expect(page.get_by_text("Signed in as")).to_be_visible()
        expect(page.get_by_text("(admin;")).to_be_visible()
        assert "signin" not in page.url  # the token left the address bar
    finally:
        first.close()
    assert not ui.grant.exists()
    second = browser.new_context()
    try:
        page = second.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(link)
        expect(page.get_by_text("used already or is no longer valid")).to_be_visible()
        expect(page.get_by_label("API key", exact=True)).to_be_visible()
    finally:
        second.close()
