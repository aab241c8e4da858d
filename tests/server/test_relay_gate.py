"""The relay's readiness gate, step by step, and its close-code and target rules."""

from __future__ import annotations

import json
from types import SimpleNamespace

import anyio
import pytest

from llmpool.server import RelayConfig
from llmpool.server._relay import upstream_target
from llmpool.server._relay_events import (
    RelayCode,
    handshake_close_code,
    passed_close_code,
    relay_error,
)
from llmpool.server._relay_gate import Gate, GateOverflowError

pytestmark = pytest.mark.anyio


async def test_frames_before_open_are_held_and_taken_in_order() -> None:
    """The writer gets nothing until open(); then every held frame, in arrival order."""
    gate = Gate(max_frames=10, max_bytes=1000)
    taken: list[str | bytes] = []

    async def writer() -> None:
        while len(taken) < 4:
            taken.append(await gate.take())

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer)
        for frame in ("a", "b", b"c"):
            await gate.put(frame, 1)
        await anyio.wait_all_tasks_blocked()
        assert taken == []
        gate.open()
        await gate.put("d", 1)
    assert taken == ["a", "b", b"c", "d"]
    assert gate.held_before_open == 3


@pytest.mark.parametrize(
    ("max_frames", "max_bytes", "sizes"),
    [
        pytest.param(3, 1000, [1, 1, 1, 1], id="frames"),
        pytest.param(100, 10, [4, 4, 4], id="bytes"),
        pytest.param(100, 10, [11], id="one-frame-too-big"),
    ],
)
async def test_overflow_before_open_is_refused_and_holds_nothing_more(
    max_frames: int, max_bytes: int, sizes: list[int]
) -> None:
    """The frame that would go over a bound raises; the frames before it stay, in order."""
    gate = Gate(max_frames=max_frames, max_bytes=max_bytes)
    *fitting, last = sizes
    for index, size in enumerate(fitting):
        await gate.put(f"f{index}", size)
    with pytest.raises(GateOverflowError, match="before the upstream was ready"):
        await gate.put("over", last)
    assert len(gate) == len(fitting)


async def test_after_open_a_fast_client_waits_instead_of_growing_the_buffer() -> None:
    """Open and full: put blocks until the writer takes a frame; nothing is refused."""
    gate = Gate(max_frames=2, max_bytes=1000)
    gate.open()
    await gate.put("a", 1)
    await gate.put("b", 1)
    done = anyio.Event()

    async def client() -> None:
        await gate.put("c", 1)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(client)
        await anyio.wait_all_tasks_blocked()
        assert not done.is_set()
        assert await gate.take() == "a"
        await anyio.wait_all_tasks_blocked()
        assert done.is_set()
    assert [await gate.take(), await gate.take()] == ["b", "c"]


async def test_after_open_one_frame_over_the_byte_bound_still_passes_alone() -> None:
    """A 15 MiB audio append over a smaller bound is not stuck forever once open."""
    gate = Gate(max_frames=4, max_bytes=10)
    gate.open()
    await gate.put("big", 50)
    assert await gate.take() == "big"


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, 1008), (403, 1008), (429, 1013), (503, 1013), (500, 1011), (404, 1011)],
)
def test_a_refused_handshake_maps_to_a_close_code(status: int, code: int) -> None:
    assert handshake_close_code(status) == code


@pytest.mark.parametrize(
    ("upstream", "client"),
    [(1000, 1000), (1001, 1001), (1008, 1008), (1011, 1011), (1013, 1013), (1005, 1011),
     (1006, 1011), (4000, 1011), (None, 1011)],
)  # fmt: skip
def test_an_upstream_close_code_is_passed_when_it_may_be_sent(
    upstream: int | None, client: int
) -> None:
    assert passed_close_code(upstream) == client


def test_the_relays_errors_have_the_realtime_error_shape() -> None:
    event = json.loads(relay_error(RelayCode.BUFFER_FULL, "full", held=3))
    assert event["type"] == "error"
    assert event["event_id"].startswith("relay_")
    assert event["error"] == {
        "type": "relay_error",
        "code": "relay_buffer_full",
        "message": "full",
        "param": None,
        "event_id": None,
        "held": 3,
    }


def test_the_upstream_target_carries_the_key_and_nothing_of_the_client() -> None:
    """The URL comes from the pooled client's base URL (or RelayConfig.url) with the model;
    the headers are the key and, for the beta API, OpenAI-Beta, and nothing else."""
    lease = SimpleNamespace(
        client=SimpleNamespace(base_url="https://api.example/v1/", api_key="sk-secret")
    )
    url, headers = upstream_target(RelayConfig(), lease, "gpt-realtime")  # type: ignore[arg-type]
    assert url == "https://api.example/v1/realtime?model=gpt-realtime"
    assert headers == {"Authorization": "Bearer sk-secret"}
    beta = RelayConfig(url="http://127.0.0.1:9/rt?x=1", beta=True)
    url, headers = upstream_target(beta, lease, "m")  # type: ignore[arg-type]
    assert url == "http://127.0.0.1:9/rt?x=1&model=m"
    assert headers == {"Authorization": "Bearer sk-secret", "OpenAI-Beta": "realtime=v1"}
