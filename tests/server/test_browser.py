"""The chat page (/chat) in a real browser: Debian's chromium, driven by Playwright.

The server runs in a blocking portal's thread (uvicorn on asyncio, hypercorn on trio); the
test drives the browser with Playwright's sync API from the test's own thread. Nothing is
skipped: without /usr/bin/chromium or the playwright package the tests fail and say what to
install (``make chromium`` installs the browser as root; never ``playwright install``, which
downloads a browser build of its own).

The simulated provider answers ``Simulated reply to: <the message>``, one word per chunk,
``stream_chunk_delay`` seconds apart.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from llmpool.server import CloseCode
from llmpool.testing import FaultPlan, SimulatedProvider
from llmpool.testing._payloads import REPLY_PREFIX

from .helpers import Served, served

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",  # as root (CI) chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "chat-page.png"
TOKEN = "page-token"
WAIT_MS = 5000  # the longest a page may take for one step (answers here take ~1 s)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the chat page's browser tests need Playwright: pip install playwright "
            "(in the dev extra: pip install -e '.[dev]'); not `playwright install`: the "
            "tests drive Debian's chromium",
            pytrace=False,
        )
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"the chat page's browser tests need {CHROMIUM}: apt-get install -y chromium "
            "(`make chromium` does it as root)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def portal(request: pytest.FixtureRequest) -> Iterator[BlockingPortal]:
    """The server's loop, in a thread: uvicorn on asyncio, hypercorn on trio (some tests
    are asyncio only: ``ASYNCIO_ONLY``)."""
    with start_blocking_portal(backend=request.param) as portal:
        yield portal


@pytest.fixture(scope="module")
def server(portal: BlockingPortal, shared_sim: SimulatedProvider) -> Iterator[Served]:
    with portal.wrap_async_context_manager(served(shared_sim)) as running:
        yield running


@pytest.fixture(scope="module")
def strict(portal: BlockingPortal, shared_sim: SimulatedProvider) -> Iterator[Served]:
    """A server with a token and room for one socket (retry after 0.2 s)."""
    settings: dict[str, Any] = {"token": TOKEN, "max_connections": 1, "retry_after": 0.2}
    with portal.wrap_async_context_manager(served(shared_sim, **settings)) as running:
        yield running


LAST = "[...document.querySelectorAll('.msg.assistant')].at(-1)"
"""The last answer on the page (JavaScript)."""


ASYNCIO_ONLY = pytest.mark.parametrize("portal", ["asyncio"], indirect=True)
"""For what only the page does (streaming into the log, escaping, the panel, the session
list): the server's backend changes nothing there, and each browser test costs about a
second. What depends on the server's sockets (resume, closes, refusals) runs on both: a
close frame right after an error reaches chromium as 1006 from hypercorn."""


class Tab:
    """One browser tab on the chat page; its errors (a CSP violation, an exception) are kept.

    Waits use ``wait_for_function`` (checked at every animation frame), not ``expect``,
    whose retries back off to a second apart.
    """

    def __init__(self, page: Page, port: int) -> None:
        self.page = page
        self.base = f"http://127.0.0.1:{port}"
        self.errors: list[str] = []
        self.before = 0  # answers on the page before the last message sent
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on(
            "console",
            lambda msg: self.errors.append(msg.text) if "Security Policy" in msg.text else None,
        )

    def open(self, session: str, *, connected: bool = True, **query: str) -> Tab:
        query = {"session": session, **query}
        self.page.goto(f"{self.base}/chat?" + "&".join(f"{k}={v}" for k, v in query.items()))
        self.before = 0
        if connected:
            self.connected()
        return self

    def connected(self) -> None:
        self.until("document.getElementById('connection').dataset.state === 'open'")

    def until(self, condition: str, arg: object = None) -> None:
        """Wait until the JavaScript ``condition`` (on ``arg``) holds."""
        self.page.wait_for_function(f"(arg) => {condition}", arg=arg, timeout=WAIT_MS)

    def send(self, message: str) -> None:
        """Send ``message`` as a user would; ``ended`` then waits for the answer to it."""
        self.before = self.page.locator(".msg.assistant").count()
        self.page.fill("#input", message)
        self.page.press("#input", "Enter")

    def text(self) -> str:
        """The last answer's text."""
        text: str = self.page.evaluate(f"{LAST}.querySelector('.text').textContent")
        return text

    def meta(self) -> str:
        """The last answer's closing line (done in…, stopped after…)."""
        meta: str = self.page.evaluate(f"{LAST}.querySelector('.meta').textContent")
        return meta

    def answering(self, part: str) -> None:
        """Wait until the last answer holds ``part``."""
        self.until(f"{LAST}?.textContent.includes(arg)", part)

    def ended(self, outcome: str = "complete") -> str:
        """Wait for the last answer (after those there before ``send``) to end with
        ``outcome``; its text."""
        self.until(
            "document.querySelectorAll('.msg.assistant').length > arg.before"
            f" && {LAST}.dataset.state === arg.outcome",
            {"before": self.before, "outcome": outcome},
        )
        return self.text()

    def status(self, pattern: str) -> str:
        """Wait until the status line matches the regular expression ``pattern``; the line."""
        self.until("new RegExp(arg).test(document.getElementById('status').textContent)", pattern)
        return self.read("#status")

    def read(self, selector: str) -> str:
        text: str = self.page.locator(selector).inner_text()
        return text

    def disabled(self, selector: str) -> bool:
        return self.page.locator(selector).is_disabled()

    def record_lengths(self) -> None:
        """Record the last answer's state and text length at every change of the log."""
        self.page.evaluate(
            f"""() => {{
              window.seen = [];
              new MutationObserver(() => {{
                const last = {LAST};
                const text = last && last.firstChild.textContent;
                if (last) window.seen.push([last.dataset.state, text.length]);
              }}).observe(document.getElementById('log'),
                          {{subtree: true, childList: true, characterData: true}});
            }}"""
        )


@pytest.fixture
def tabs(browser: Browser) -> Iterator[Callable[[Served], Tab]]:
    """New tabs, each in a context of its own (its own sessionStorage), closed at the end;
    none may have had an exception or a Content-Security-Policy violation."""
    opened: list[Tab] = []

    def new_tab(server: Served) -> Tab:
        context = browser.new_context(viewport={"width": 960, "height": 600})
        opened.append(Tab(context.new_page(), server.port))
        return opened[-1]

    yield new_tab
    for tab in opened:
        tab.page.context.close()
    assert [error for tab in opened for error in tab.errors] == []


def _wait(check: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until ``check()`` (of the server's state, read from this thread) is true."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def reply(message: str) -> str:
    return REPLY_PREFIX + message


WORDS = " ".join(f"w{i}" for i in range(12))  # 16 chunks with the reply's prefix
LONG = " ".join(f"w{i}" for i in range(40))


@ASYNCIO_ONLY
def test_an_answer_streams_into_the_page(
    server: Served, sim: SimulatedProvider, tabs: Callable[[Served], Tab]
) -> None:
    """The answer's text grows chunk by chunk (several lengths seen before complete), and
    ends as the whole reply with its 'done in' line."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.01))
    tab = tabs(server).open("stream")
    tab.record_lengths()
    tab.send(WORDS)
    assert tab.ended("complete") == reply(WORDS)
    seen = tab.page.evaluate("window.seen")
    growing = {length for state, length in seen if state == "streaming" and length}
    assert len(growing) >= 2, seen
    assert tab.meta().startswith("done in")
    assert tab.read(".msg.user .text") == WORDS


@ASYNCIO_ONLY
def test_stop_ends_the_answer_mid_stream(
    server: Served, sim: SimulatedProvider, tabs: Callable[[Served], Tab]
) -> None:
    """Stop sends stop: the answer ends stopped with its partial text, and the page can
    send again."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.02))
    tab = tabs(server).open("stop")
    tab.send(LONG)
    tab.answering("w1")
    assert tab.disabled("#send")
    tab.page.click("#stop")
    partial = tab.ended("stopped")
    assert reply(LONG).startswith(partial)
    assert len(partial) < len(reply(LONG))
    assert tab.meta().startswith("stopped after")
    assert tab.disabled("#stop")
    assert not tab.disabled("#send")


def test_tabs_on_one_session_show_the_same_answer(
    server: Served, sim: SimulatedProvider, tabs: Callable[[Served], Tab]
) -> None:
    """A tab open before the message and a tab opened mid-answer (it loads the transcript
    and resumes after its last_seq) end with the same text, nothing twice; a message from
    the second while the answer runs is session_busy, in one line."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.025))  # ~1.1 s for LONG's 44 chunks
    first, second = tabs(server).open("shared"), tabs(server).open("shared")
    first.send(LONG)
    second.answering("w2")
    assert second.disabled("#send")  # it knows the answer runs: Send waits, Stop is there
    second.page.evaluate("send({type: 'message', message: 'me too'})")  # past the button
    line = second.status("^session_busy")
    assert re.fullmatch(r"session_busy: turn turn_\w+ .* — wait for the answer, or stop it", line)
    late = tabs(server).open("shared")
    texts = [tab.ended("complete") for tab in (first, second, late)]
    assert texts == [reply(LONG)] * 3
    assert late.read(".msg.user .text") == LONG  # from the transcript
    assert len(sim.requests) == 1


@ASYNCIO_ONLY
def test_model_output_that_looks_like_html_stays_text(
    server: Served, sim: SimulatedProvider, tabs: Callable[[Served], Tab]
) -> None:
    """An answer (and a message) holding markup is shown as text, as it streams and when
    the transcript is reloaded: no element is made of it, no handler runs."""
    markup = "<img src=x onerror=\"document.title='pwned'\"> <b>bold</b>"
    tab = tabs(server).open("inject")
    tab.send(markup)
    assert tab.ended("complete") == reply(markup)
    for reloaded in (False, True):
        if reloaded:
            tab.open("inject")  # the transcript, from GET /api/sessions/inject
        assert tab.page.locator("#log img, #log b").count() == 0
        assert tab.read(".msg.user .text") == markup
        assert tab.text() == reply(markup)
        assert tab.page.title() == "llmpool chat"


@ASYNCIO_ONLY
def test_the_live_panel_shows_the_servers_numbers(
    server: Served, sim: SimulatedProvider, tabs: Callable[[Served], Tab]
) -> None:
    """Polled every second: connections / capacity, queue, in flight (1 while an answer
    streams), retries."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.05))
    tab = tabs(server).open("panel")
    tab.send(LONG)
    tab.until("document.getElementById('m-inflight').textContent === '1'")
    assert re.fullmatch(r"\d+ / 25", tab.read("#m-connections"))
    assert tab.read("#m-queue").isdigit()
    assert tab.read("#m-retries").isdigit()
    tab.page.click("#stop")
    tab.ended("stopped")


def test_the_page_reconnects_and_resumes_after_the_server_drops_it(
    server: Served,
    portal: BlockingPortal,
    sim: SimulatedProvider,
    tabs: Callable[[Served], Tab],
) -> None:
    """The server closes the socket mid-answer (1012): the page says it is reconnecting,
    reconnects after its backoff (0.5 to 1 s), resumes after the last seq it saw, and ends
    with the whole answer, nothing lost or twice; the turn was not sent again."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.02))
    tab = tabs(server).open("drop")
    tab.send(WORDS)
    tab.answering("w1")

    def drop() -> None:
        for sock in list(server.runtime.sockets):
            sock.close(CloseCode.SERVICE_RESTART, None, "dropped by the test")

    portal.call(drop)
    line = tab.status(r"reconnecting in \d")
    assert line.startswith("the server is restarting (1012: dropped by the test): reconnecting")
    assert tab.ended("complete") == reply(WORDS)
    tab.status("^reconnected: session drop resumed after frame [1-9]")
    assert len(sim.requests) == 1


def test_a_token_in_the_url_opens_a_server_that_needs_one(
    strict: Served, tabs: Callable[[Served], Tab]
) -> None:
    """Without the token: unauthorized, in one line, no retry. With ?token=: the first
    frame authenticates, /api/* gets the bearer header, and the token leaves the URL."""
    _wait(lambda: strict.runtime.metrics.active == 0)
    tab = tabs(strict).open("locked", connected=False)
    line = tab.status("^unauthorized")
    assert line == (
        "unauthorized: a valid token is required — enter the server's token above; not retrying"
    )
    tab.until("document.getElementById('m-queue').textContent === 'token?'")
    tab.open("locked", token=TOKEN)
    assert "token" not in tab.page.url
    tab.send("hello")
    assert tab.ended("complete") == reply("hello")
    tab.until("/^\\d+$/.test(document.getElementById('m-queue').textContent)")


def test_a_full_server_is_retried_after_its_retry_after(
    strict: Served, tabs: Callable[[Served], Tab]
) -> None:
    """At capacity the page says so with the server's wait (server_at_capacity: retrying
    in N s), and connects once a slot is free."""
    _wait(lambda: strict.runtime.metrics.active == 0)
    holder = tabs(strict).open("one", token=TOKEN)
    waiting = tabs(strict).open("two", connected=False, token=TOKEN)
    line = waiting.status("retrying in")
    assert re.fullmatch(r"server_at_capacity: .* \(1 connections\): retrying in 0\.\d s", line)
    holder.page.close()
    waiting.connected()


@ASYNCIO_ONLY
def test_sessions_can_be_switched_and_created(
    server: Served, sim: SimulatedProvider, tabs: Callable[[Served], Tab]
) -> None:
    """New session: a random id, an empty log, in the URL; the list keeps the sessions of
    this tab, and choosing one shows its transcript again; an id can be typed."""
    tab = tabs(server).open("alpha")
    tab.send("one")
    tab.ended("complete")
    tab.page.click("#new-session")
    tab.until("/^chat-[0-9a-f]{12}$/.test(document.getElementById('session-id').textContent)")
    fresh = tab.read("#session-id")
    tab.connected()
    assert tab.page.locator(".msg").count() == 0
    assert tab.page.url.endswith(f"/chat?session={fresh}")
    tab.send("two")
    assert tab.ended("complete") == reply("two")
    tab.page.select_option("#sessions", "alpha")
    tab.until("document.querySelector('.msg.user')?.textContent === 'one'")
    assert tab.text() == reply("one")
    assert tab.page.locator("#sessions option").all_inner_texts() == ["alpha", fresh]
    tab.page.fill("#session-input", "typed")
    tab.page.press("#session-input", "Enter")
    tab.until("document.getElementById('session-id').textContent === 'typed'")
    assert tab.page.locator("#sessions option").all_inner_texts() == ["typed", "alpha", fresh]


@ASYNCIO_ONLY
def test_a_screenshot_of_the_page(
    server: Served, sim: SimulatedProvider, tabs: Callable[[Served], Tab], tmp_path: Path
) -> None:
    """The page after two answers, as docs/server.md shows it. docs/images/chat-page.png is
    written when missing or with LLMPOOL_UPDATE_SCREENSHOT=1, so that a test run does not
    change the committed file."""
    sim.set_fault_plan(FaultPlan(stream_chunk_delay=0.01))
    tab = tabs(server).open("travel")
    tab.send("Plan a weekend in Lisbon")
    tab.ended("complete")
    tab.open("notes")
    for message in ("What does llmpool do?", "Summarise the last answer in one line, please"):
        tab.send(message)
        tab.ended("complete")
    tab.until("/^[1-9]\\d* \\/ 25$/.test(document.getElementById('m-connections').textContent)")
    shot = tmp_path / "chat-page.png"
    tab.page.screenshot(path=str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG")
    if not SCREENSHOT.exists() or os.environ.get("LLMPOOL_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
