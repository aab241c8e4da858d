"""/chat and its files: content types, the Content-Security-Policy, nothing from elsewhere."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import httpx
import pytest

from llmpool.server import ServerConfig, create_app
from llmpool.server._page import CONTENT_SECURITY_POLICY

pytestmark = pytest.mark.anyio

STATIC = resources.files("llmpool.server").joinpath("static")
FILES = {
    name: STATIC.joinpath(name).read_text(encoding="utf-8")
    for name in ("chat.html", "chat.css", "chat.js")
}


async def _get(path: str) -> httpx.Response:
    app = create_app(ServerConfig())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await http.get(path)


@pytest.mark.parametrize(
    ("path", "media_type", "name"),
    [
        ("/chat", "text/html; charset=utf-8", "chat.html"),
        ("/static/chat.js", "text/javascript; charset=utf-8", "chat.js"),
        ("/static/chat.css", "text/css; charset=utf-8", "chat.css"),
    ],
)
async def test_the_page_and_its_files_are_served_with_their_types_and_the_csp(
    path: str, media_type: str, name: str
) -> None:
    """Each file with its content type, the strict CSP, nosniff and no referrer."""
    response = await _get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.text == FILES[name]


@pytest.mark.parametrize("path", ["/static/chat.html", "/static/nope.js", "/static/..%2F_page.py"])
async def test_only_the_pages_files_are_served(path: str) -> None:
    """/static/ serves chat.js and chat.css, nothing else of the package."""
    assert (await _get(path)).status_code == 404


async def test_the_index_links_the_page() -> None:
    """/ lists the chat page next to the chat socket."""
    assert (await _get("/")).json()["endpoints"]["chat_page"] == "/chat"


def test_the_policy_allows_this_origin_only_and_no_inline_script() -> None:
    """Scripts and styles from 'self' only; nothing by default; never framed."""
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self' ws: wss:"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("name", sorted(FILES))
def test_the_page_references_no_external_url(name: str) -> None:
    """No scheme-qualified or protocol-relative URL, no CSS import or url()."""
    text = FILES[name]
    assert re.findall(r"(?:[a-z]+:)?//[\w.-]+", text, re.IGNORECASE) == []
    assert "@import" not in text
    assert "url(" not in text


def test_the_html_has_no_inline_script_or_style() -> None:
    """The CSP would block them: the page loads its script and style by (relative) URL."""
    html = FILES["chat.html"]
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="static/chat.js" defer>']
    assert "<style" not in html
    assert re.findall(r"\son[a-z]+\s*=", html) == []  # no onclick= and the like
    assert 'href="static/chat.css"' in html


def test_the_script_never_parses_a_string_as_html() -> None:
    """Model output reaches the page as text: no innerHTML, outerHTML,
    insertAdjacentHTML, document.write or eval in the script."""
    script = FILES["chat.js"]
    code = "\n".join(line.split("//")[0] for line in script.splitlines())
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in code


def test_the_page_reconnects_on_the_close_codes_and_backoff_of_llmpool_chat() -> None:
    """The page mirrors the terminal client: the same close codes reconnect, with the same
    backoff (initial, maximum, jitter in seconds)."""
    from llmpool._cli.chat._policy import _RECONNECT, ReconnectPolicy

    script = FILES["chat.js"]
    codes = re.search(r"const RECONNECT = new Set\(\[([\d, ]+)\]\);", script)
    assert codes is not None
    assert {int(code) for code in codes.group(1).split(",")} == set(_RECONNECT)
    backoff = re.search(r"const BACKOFF = \{ (.+?) \};", script)
    assert backoff is not None
    values = dict(item.split(": ") for item in backoff.group(1).split(", "))
    policy = ReconnectPolicy()
    assert {k: float(v) for k, v in values.items()} == {
        "initial": policy.initial,
        "maximum": policy.maximum,
        "jitter": policy.jitter,
    }


def test_docs_give_the_policy_as_it_is_sent() -> None:
    """docs/server.md's "Chat page" quotes the Content-Security-Policy header whole."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "server.md").read_text("utf-8")
    assert CONTENT_SECURITY_POLICY in " ".join(doc.split())
    assert "(#chat-page)" in doc
    assert "](images/chat-page.png)" in doc
