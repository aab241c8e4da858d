"""Secrets in logs: what llmpool logs never holds a configured API key or an OpenAI-shaped key."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import openai
import pytest
import respx

from llmpool import ConnectionManager, PoolConfig, RetryPolicy
from llmpool import _constants as C
from llmpool._log import LoggingInstrument, log_event
from llmpool._redact import DEFAULT_REDACTOR, Redactor

BASE = "http://respx.test/v1"
OPENAI_SHAPED = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0" * 2 + "wxyz"  # 52 characters
OTHER_SHAPE = "corp_live_0123456789abcdef"  # no sk- prefix: hidden only because configured
MESSAGES = [{"role": "user", "content": "hello"}]


def record_texts(records: list[logging.LogRecord]) -> list[str]:
    """Every string a handler could print: the message and each string attribute."""
    texts = [record.getMessage() for record in records]
    texts += [value for r in records for value in vars(r).values() if isinstance(value, str)]
    return texts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(f"bad key {OPENAI_SHAPED}.", "bad key sk-...wxyz.", id="configured-sk"),
        pytest.param(f"key={OTHER_SHAPE}", "key=cor...cdef", id="configured-other"),
        pytest.param(
            "Incorrect API key provided: sk-" + "z" * 30 + "9876",
            "Incorrect API key provided: sk-...9876",
            id="unconfigured-sk-shape",
        ),
        pytest.param("secret12 and secret12", "[REDACTED] and [REDACTED]", id="short-secret"),
        pytest.param("task-" + "x" * 30, "task-" + "x" * 30, id="not-a-key-inside-a-word"),
        pytest.param("sk-short", "sk-short", id="too-short-for-the-shape"),
        pytest.param("ollama k EMPTY", "ollama k EMPTY", id="placeholders-kept"),
    ],
)
def test_redactor_replaces_secrets(text: str, expected: str) -> None:
    """Configured keys (>= 8 chars) and sk-shaped keys are masked; other text is untouched."""
    redact = Redactor([OPENAI_SHAPED, OTHER_SHAPE, "secret12", "ollama", "k", "EMPTY"])
    assert redact(text) == expected


def test_a_key_containing_another_is_masked_whole() -> None:
    """Longest key first: a configured key that extends another leaves no tail behind."""
    redact = Redactor(["abcdefgh", "abcdefgh-and-more-characters"])
    assert redact("x abcdefgh-and-more-characters y") == "x abc...ters y"


def test_for_clients_reads_the_api_keys() -> None:
    """A manager's redactor hides its clients' api_key (and admin_api_key) values."""
    clients = [openai.AsyncOpenAI(api_key=OTHER_SHAPE, base_url=BASE)]
    assert OTHER_SHAPE not in Redactor.for_clients(clients)(f"echo {OTHER_SHAPE}")


def log(redact: Redactor, message: str, **fields: str) -> None:
    log_event(redact, logging.WARNING, "failed", "req_1", None, "normal", 0, message, **fields)


def test_request_log_redacts_message_and_extra_fields(caplog: pytest.LogCaptureFixture) -> None:
    """log_event masks the message and every string field it puts in extra."""
    with caplog.at_level(logging.WARNING, logger=C.LOGGER_NAME):
        log(Redactor([OTHER_SHAPE]), f"echo {OTHER_SHAPE}", reason=f"x {OTHER_SHAPE}")
    (record,) = caplog.records
    assert record.getMessage() == "req_1 failed: echo cor...cdef"
    assert record.reason == "x cor...cdef"  # type: ignore[attr-defined]
    assert not any(OTHER_SHAPE in text for text in record_texts(caplog.records))


def test_disabled_level_costs_no_redaction(caplog: pytest.LogCaptureFixture) -> None:
    """A record the logger would drop is never built: the redactor is not called."""
    calls: list[str] = []

    class Spy(Redactor):
        __slots__ = ()

        def __call__(self, text: str) -> str:
            calls.append(text)
            return text

    spy = Spy()
    with caplog.at_level(logging.ERROR, logger=C.LOGGER_NAME):
        log(spy, "not logged")
    assert calls == []
    with caplog.at_level(logging.WARNING, logger=C.LOGGER_NAME):
        log(spy, "logged")
    assert "logged" in calls


def test_requests_built_outside_a_manager_hide_sk_shaped_keys() -> None:
    """The default redactor (no configured keys) still masks OpenAI-shaped keys."""
    assert LoggingInstrument().redactor is DEFAULT_REDACTOR
    assert DEFAULT_REDACTOR(OPENAI_SHAPED) == "sk-...wxyz"


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.mark.parametrize("api_key", [OPENAI_SHAPED, OTHER_SHAPE], ids=["sk", "other"])
@pytest.mark.anyio
async def test_failed_record_does_not_leak_an_echoed_key(
    mock: respx.MockRouter, caplog: pytest.LogCaptureFixture, api_key: str
) -> None:
    """An upstream that echoes the key in its 401 body: the failed WARNING hides it."""
    body = {
        "error": {
            "message": f"Incorrect API key provided: {api_key}.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    route = mock.post("/chat/completions").mock(return_value=httpx.Response(401, json=body))

    def factory(index: int) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key=api_key, base_url=BASE, http_client=httpx.AsyncClient())

    config = PoolConfig(retry=RetryPolicy(max_attempts=1))
    with caplog.at_level(logging.DEBUG, logger=C.LOGGER_NAME):
        async with ConnectionManager(config, client_factory=factory) as m:
            with pytest.raises(openai.AuthenticationError) as info:
                await m.chat.completions.create(
                    model="m",
                    messages=MESSAGES,  # type: ignore[arg-type]
                )
    assert route.call_count == 1
    assert api_key in str(info.value)  # the caller's exception is the SDK's, unchanged
    failed = [r for r in caplog.records if getattr(r, "llmpool_event", None) == "failed"]
    assert len(failed) == 1
    assert f"{api_key[:3]}...{api_key[-4:]}" in failed[0].getMessage()
    assert not any(api_key in text for text in record_texts(caplog.records))
