"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

One server (on 127.0.0.1, over a store in a temporary directory) and one browser for the module;
each test has its own browser context, so its own cookies. Screenshots go to
tests/e2e/artifacts/ (not committed). Skipped, with the reason, where /usr/bin/chromium or the
``playwright`` package is missing (``.ci/run`` installs Chromium; never ``playwright install``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import RunningServer, launch_server

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "/usr/bin/chromium is absent (apt-get install chromium; .ci/run does)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev extra)")

ARTIFACTS = Path(__file__).parent / "artifacts"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TEA = "Alice drinks green tea every morning"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running, stop = launch_server(tmp_path_factory.mktemp("dashboard"), job_workers=0)
    memory = running.memory
    memory.add(TEA, user_id="alice", agent_id="concierge")
    memory.add("Alice is allergic to peanuts", user_id="alice", agent_id="concierge")
    memory.add("Alice prefers window seats on long flights", user_id="alice")
    memory.add("Bob plays chess on Sundays", user_id="bob", agent_id="coach")
    memory.add("Bob is learning the Sicilian defence", user_id="bob", agent_id="coach")
    memory.add("Carol moved to Lisbon in March", user_id="carol")
    yield running
    stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=ARGS
        )
        yield launched
        launched.close()


class Session:
    """A browser context signed in (or not) to the test server; it records CSP violations."""

    def __init__(self, browser: Any, server: RunningServer, **options: Any) -> None:
        self.server = server
        self.context = browser.new_context(base_url=server.base_url, **options)
        self.context.set_default_timeout(10_000)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on("dialog", lambda dialog: dialog.accept())

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.problems.append(message.text)

    def sign_in(self, key: str) -> None:
        self.page.goto("/ui/memories")
        assert "/ui/login" in self.page.url
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url("**/ui/memories")

    def shot(self, name: str, full_page: bool = True) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)

    def close(self) -> None:
        self.context.close()
        assert self.problems == []  # no CSP violation, no script error, no failed load


@pytest.fixture
def session(browser: Any, server: RunningServer) -> Iterator[Session]:
    opened = Session(browser, server, viewport={"width": 1280, "height": 860})
    yield opened
    opened.close()


def test_sign_in_search_open_edit_and_delete(session: Session) -> None:
    page = session.page
    session.page.goto("/ui/login")
    session.shot("login", full_page=False)
    session.sign_in(session.server.admin_key)
    assert page.get_by_role("link", name="alice").is_visible()
    page.get_by_label("User", exact=True).fill("alice")
    page.get_by_label("Search (hybrid: meaning and words)").fill("what does alice drink")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r".*q=what.*"))
    first = page.locator("table.results tbody tr").first
    assert TEA in first.inner_text()
    parts = first.locator("dl.parts dt").all_inner_texts()
    assert "vector" in parts and "bm25" in parts, parts
    session.shot("search")

    page.get_by_role("link", name=TEA).click()
    page.wait_for_url(re.compile(r".*/ui/memories/[0-9a-f-]{36}$"))
    assert page.locator("#memory-text").inner_text() == TEA
    page.get_by_label("Text").fill("Alice drinks oolong tea every morning")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**saved=1")
    assert page.locator("#memory-text").inner_text() == "Alice drinks oolong tea every morning"
    timeline = page.locator("ol.timeline")
    assert timeline.locator("li").count() == 2
    assert TEA in timeline.inner_text() and "UPDATE" in timeline.inner_text()
    session.shot("memory")

    page.get_by_role("button", name="Delete this memory").click()
    page.wait_for_url("**/ui/memories?deleted=1")
    assert page.get_by_role("status").first.inner_text() == "The memory was deleted."


def test_create_and_revoke_a_key(session: Session) -> None:
    page = session.page
    session.sign_in(session.server.admin_key)
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("laptop")
    page.get_by_label("Role").select_option("read")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("Secret").input_value()
    assert secret.startswith("mvk_")
    session.shot("keys")
    key_id = secret.split("_")[1]
    assert session.server.memory.api_keys.authenticate(secret).role == "read"
    page.goto("/ui/keys")
    assert secret not in page.content()  # shown once
    row = page.locator(f"#key-{key_id}")
    row.get_by_role("button", name=f"Revoke key {key_id}").click()
    page.wait_for_url("**/ui/keys")
    assert page.locator(f"#key-{key_id}").get_by_text("revoked").is_visible()


def test_erase_a_user_with_a_typed_confirmation(session: Session) -> None:
    page = session.page
    session.sign_in(session.server.admin_key)
    page.get_by_role("link", name="Users").click()
    page.get_by_role("link", name="bob").click()
    erase = page.get_by_role("button", name="Erase this user")
    assert erase.is_disabled()
    page.get_by_label("Type the user id").fill("bo")
    assert erase.is_disabled()
    page.get_by_label("Type the user id").fill("bob")
    assert erase.is_enabled()
    session.shot("users")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export as a file (JSON lines)").click()
    assert download.value.suggested_filename == "memvault-export-default-bob.jsonl"
    erase.click()
    page.wait_for_url("**/ui/users?erased=2")
    assert session.server.memory.count(user_id="bob") == 0


def test_a_read_only_key_cannot_change_anything(session: Session) -> None:
    server = session.server
    reader = server.key("read")
    session.sign_in(reader)
    page = session.page
    assert page.get_by_role("link", name="API keys").count() == 0
    page.goto("/ui/memories?user_id=carol")
    page.get_by_role("link", name="Carol moved to Lisbon in March").click()
    assert page.get_by_role("button", name="Save").count() == 0
    assert page.get_by_role("button", name="Delete this memory").count() == 0
    memory_id = page.url.rsplit("/", 1)[1]
    csrf = page.locator('input[name="csrf"]').first.input_value()
    # Forged requests with the session's own cookie and CSRF token: the role refuses them.
    for path, form in [
        (f"/ui/memories/{memory_id}/edit", {"text": "forged"}),
        (f"/ui/memories/{memory_id}/delete", {}),
        ("/ui/keys", {"role": "admin"}),
        ("/ui/users/carol/erase", {"confirm": "carol"}),
    ]:
        answer = session.context.request.post(path, form={**form, "csrf": csrf})
        assert answer.status == 403, path
    found = server.memory.get(memory_id)
    assert found is not None and found["memory"] == "Carol moved to Lisbon in March"
    page.goto("/ui/keys")
    assert page.get_by_role("alert").inner_text().startswith("forbidden")
    expected = "the server responded with a status of 403"
    session.problems = [p for p in session.problems if expected not in p]


def test_overview_audit_and_a_narrow_screen(browser: Any, server: RunningServer) -> None:
    wide = Session(browser, server, viewport={"width": 1280, "height": 860})
    try:
        wide.sign_in(server.admin_key)
        wide.page.goto("/ui/overview")
        assert wide.page.locator("svg.chart").count() == 1  # the server has metrics by now
        wide.shot("overview")
        wide.page.goto("/ui/audit")
        assert "Chain verified" in wide.page.get_by_role("status").first.inner_text()
        wide.shot("audit")
    finally:
        wide.close()
    narrow = Session(browser, server, viewport={"width": 390, "height": 844})
    try:
        narrow.sign_in(server.admin_key)
        page = narrow.page
        page.goto("/ui/memories?user_id=alice")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390  # nothing forces a sideways scroll
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"
        narrow.shot("narrow")
    finally:
        narrow.close()


def test_signing_out_ends_the_session(session: Session) -> None:
    page = session.page
    session.sign_in(session.server.admin_key)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/ui/login")
    assert all(c["name"] != "memvault_session" for c in session.context.cookies())
    page.goto("/ui/overview")
    assert "/ui/login" in page.url
    assert page.evaluate("window.localStorage.length") == 0
