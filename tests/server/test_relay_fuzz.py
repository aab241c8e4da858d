"""Fuzzed relay sessions (a seeded loop): 2,000 sessions over both backends, each sending a
random number of frames at once, around a bound, while the upstream takes 0-30 ms to be
ready (loopback, real sockets)."""

from __future__ import annotations

import contextlib
import json
import random
from typing import Any

import anyio
import pytest
from httpx_ws import WebSocketDisconnect, WebSocketNetworkError

from llmpool.server import RelayConfig
from llmpool.testing import RealtimePlan, SimulatedProvider

from .helpers import KEY, Served, served
from .test_relay import relay

pytestmark = pytest.mark.anyio

SESSIONS = 1000  # per backend: 2,000 in the suite
WAVE = 25
BOUND = 12  # frames the relay holds before the upstream is ready


async def _session(server: Served, name: str, count: int, outcome: dict[str, Any]) -> None:
    """Send ``count`` appends at once; once the session is ready, a response.create, and wait
    for its response.done (by then every earlier frame went upstream: the relay is FIFO)."""
    events: list[dict[str, Any]] = []
    outcome["events"] = events
    async with relay(server) as ws:
        try:
            for j in range(count):
                append = {"type": "input_audio_buffer.append", "audio": f"{name}-{j}"}
                await ws.send_text(json.dumps(append))
            with anyio.fail_after(10):
                while not events or events[-1]["type"] != "response.done":
                    events.append(json.loads(await ws.receive_text()))
                    if events[-1]["type"] == "session.created":
                        await ws.send_text(json.dumps({"type": "response.create"}))
        except WebSocketDisconnect as exc:
            outcome["code"] = exc.code
        except WebSocketNetworkError:  # sent after the relay closed: read how it closed
            with anyio.fail_after(10), contextlib.suppress(WebSocketDisconnect):
                while True:
                    events.append(json.loads(await ws.receive_text()))
            outcome["code"] = 1013


async def test_every_frame_reaches_the_upstream_once_in_order_or_the_client_is_told(
    sim: SimulatedProvider,
) -> None:
    """Every session either has all its frames reach the upstream exactly once, in order,
    or (only when more than the bound arrived before the upstream was ready) gets
    relay_buffer_full and 1013 and nothing else, with nothing sent upstream. No frame to a
    client carries the key."""
    rng = random.Random(2026)
    outcomes: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    async with served(
        sim, max_connections=200, relay=RelayConfig(max_buffer_frames=BOUND)
    ) as server:
        for wave in range(SESSIONS // WAVE):
            sim.set_realtime_plan(RealtimePlan(session_created_delay=rng.choice([0.0, 0.01, 0.03])))
            async with anyio.create_task_group() as tg:
                for k in range(WAVE):
                    name = f"w{wave}s{k}"
                    counts[name] = rng.randint(0, BOUND + 4)
                    outcomes[name] = {}
                    tg.start_soon(_session, server, name, counts[name], outcomes[name])
    upstream: dict[str, list[str]] = {}
    for recorded in sim.realtime_sessions:
        for frame in recorded.frames:
            event = frame.event
            if isinstance(event, dict) and event.get("type") == "input_audio_buffer.append":
                name, _, _ = event["audio"].rpartition("-")
                upstream.setdefault(name, []).append(event["audio"])
    overflowed = 0
    for name, count in counts.items():
        outcome = outcomes[name]
        events = outcome["events"]
        assert all(KEY not in json.dumps(event) for event in events)
        if "code" in outcome:  # over the bound before the upstream was ready
            overflowed += 1
            assert count > BOUND, name
            assert outcome["code"] == 1013, name
            codes = [e.get("error", {}).get("code", e["type"]) for e in events]
            assert codes == ["relay_buffer_full"], (name, count, codes)
            assert name not in upstream, name
        else:
            assert upstream.get(name, []) == [f"{name}-{j}" for j in range(count)], name
            assert events[0]["type"] == "session.created"
            assert events[-1]["type"] == "response.done"
    assert overflowed > SESSIONS // 20  # the bound was reached often enough to be tested
