"""Instruments: per-hook cache, the order of one request's events, a raising instrument."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import openai
import pytest

from llmpool import ConnectionManager, PoolConfig, RetryPolicy
from llmpool import _constants as C
from llmpool._hooks import Hooks
from llmpool.instrumentation import HOOK_NAMES, Instrument, RequestFinished

from .helpers import client_factory, status_error

pytestmark = pytest.mark.anyio


class Recorder:
    """Duck-typed instrument (no base class): records (hook, event) for every hook."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []
        for name in HOOK_NAMES:
            setattr(self, name, lambda event, name=name: self.seen.append((name, event)))


def test_a_hook_nobody_defines_is_none() -> None:
    """The engine checks one attribute: None when no instrument defines the hook."""

    class OnlyFinished(Instrument):
        def on_request_finished(self, event: RequestFinished) -> None:
            pass

    hooks = Hooks([OnlyFinished()])
    assert hooks.on_request_finished is not None
    assert all(getattr(hooks, n) is None for n in HOOK_NAMES if n != "on_request_finished")


def test_trusted_single_listener_is_called_directly() -> None:
    """A hook only one of llmpool's own instruments defines is its bound method, unwrapped."""

    class Own(Instrument):
        def on_first_chunk(self, event: Any) -> None:
            pass

    own = Own()
    hooks = Hooks([own], trusted=1)
    assert hooks.on_first_chunk == own.on_first_chunk


def test_registration_errors_name_the_problem() -> None:
    """No hooks at all: TypeError; twice: ValueError; removing a stranger: ValueError."""
    hooks = Hooks()
    with pytest.raises(TypeError, match="defines none of the instrument hooks"):
        hooks.add(object())
    recorder = Recorder()
    hooks.add(recorder)
    with pytest.raises(ValueError, match="already registered"):
        hooks.add(recorder)
    hooks.remove(recorder)
    with pytest.raises(ValueError, match="not registered"):
        hooks.remove(recorder)


async def test_one_request_reports_its_events_in_order() -> None:
    """A 503 then an answer: started, finished(error, 503), retrying, started, finished(ok),
    then RequestFinished last, once, with the attempts and no failure status."""
    recorder = Recorder()
    calls = 0

    async def flaky(client: openai.AsyncOpenAI) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise status_error(503)
        return "ok"

    config = PoolConfig(retry=RetryPolicy(initial_backoff=0.001, max_backoff=0.001, jitter=0))
    async with ConnectionManager(
        config, client_factory=client_factory(), instruments=[recorder]
    ) as m:
        assert await m.run(flaky, session_id="s", model="m") == "ok"
    names = [name for name, _ in recorder.seen]
    assert names == [
        "on_attempt_started",
        "on_attempt_finished",
        "on_retry_scheduled",
        "on_attempt_started",
        "on_attempt_finished",
        "on_request_finished",
    ]
    first_end, retry, last_end, finished = (
        recorder.seen[1][1],
        recorder.seen[2][1],
        recorder.seen[4][1],
        recorder.seen[5][1],
    )
    assert (first_end.outcome, first_end.status, first_end.attempt) == ("error", 503, 1)
    assert (retry.reason, retry.attempt, retry.cooldown) == ("status 503", 1, False)
    assert (last_end.outcome, last_end.status, last_end.attempt) == ("ok", None, 2)
    assert (finished.outcome, finished.attempts, finished.status) == ("completed", 2, None)
    assert (finished.session_id, finished.model, finished.operation) == ("s", "m", None)
    assert finished.request_id == first_end.request_id == retry.request_id


async def test_a_queued_request_reports_queued_first() -> None:
    """A request that waits for a slot reports RequestQueued before its first attempt."""
    recorder = Recorder()
    gate = anyio.Event()

    async def blocked(client: openai.AsyncOpenAI) -> None:
        await gate.wait()

    async with (
        ConnectionManager(
            PoolConfig(max_concurrency=1), client_factory=client_factory(), instruments=[recorder]
        ) as m,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(m.run, blocked)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(m.run, blocked)
        await anyio.wait_all_tasks_blocked()
        queued = [e for n, e in recorder.seen if n == "on_request_queued"]
        assert len(queued) == 1
        assert queued[0].queued == 1
        gate.set()
    second = [e.request_id for n, e in recorder.seen if n != "on_request_queued"]
    assert second.count(queued[0].request_id) == 3  # started, finished, request finished


async def test_a_raising_instrument_is_removed_and_the_request_completes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An instrument that raises is logged and removed; requests and other instruments go on."""

    class Broken(Instrument):
        calls = 0

        def on_request_finished(self, event: RequestFinished) -> None:
            Broken.calls += 1
            raise RuntimeError("exporter down")

    recorder = Recorder()

    async def ok(client: openai.AsyncOpenAI) -> str:
        return "ok"

    with caplog.at_level(logging.ERROR, logger=C.LOGGER_NAME):
        async with ConnectionManager(
            client_factory=client_factory(), instruments=[Broken(), recorder]
        ) as m:
            assert await m.run(ok) == "ok"
            assert await m.run(ok) == "ok"
            assert m.stats().completed_requests == 2
    assert Broken.calls == 1
    assert [n for n, _ in recorder.seen].count("on_request_finished") == 2
    assert any("exporter down" in (r.exc_text or "") for r in caplog.records)


async def test_the_managers_own_instruments_cannot_be_removed() -> None:
    """remove_instrument refuses logging and stats(); add/remove work for the caller's own."""
    recorder = Recorder()
    async with ConnectionManager(client_factory=client_factory()) as m:
        with pytest.raises(ValueError, match="stay registered"):
            m.remove_instrument(m._engine.stats)
        m.add_instrument(recorder)

        async def ok(client: openai.AsyncOpenAI) -> None:
            return None

        await m.run(ok)
        m.remove_instrument(recorder)
        await m.run(ok)
    assert [n for n, _ in recorder.seen].count("on_request_finished") == 1


async def test_stats_count_llmpool_errors_by_type_not_by_name() -> None:
    """A caller's own exception that happens to be named QueueTimeoutError is a failure, not
    a queue timeout: stats() tells llmpool's errors by their class."""

    class QueueTimeoutError(Exception):  # the caller's, not llmpool's
        pass

    async def fails(client: openai.AsyncOpenAI) -> None:
        raise QueueTimeoutError("mine")

    async with ConnectionManager(client_factory=client_factory()) as m:
        with pytest.raises(QueueTimeoutError):
            await m.run(fails)
        stats = m.stats()
    assert (stats.failed_requests, stats.total_timeouts, stats.rejected_requests) == (1, 0, 0)
