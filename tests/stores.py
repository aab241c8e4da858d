"""A health store shared by several managers, on the wall clock: what a store shared between
processes (Redis pub/sub) does, in one process. Cooldowns go out converted to Unix time and
come back to every member (the sender too) converted to its own loop clock."""

from __future__ import annotations

import math

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from llmpool._config import CircuitPolicy
from llmpool._state import ClockSeam, MemoryHealth, StoreClock, UpstreamHealth


class Hub:
    """The shared medium: every member receives every published cooldown."""

    def __init__(self) -> None:
        self.members: list[MemoryObjectSendStream[tuple[str, float]]] = []
        self.published: list[tuple[str, float]] = []  # (upstream, until) in Unix seconds

    def join(
        self,
    ) -> tuple[
        MemoryObjectSendStream[tuple[str, float]], MemoryObjectReceiveStream[tuple[str, float]]
    ]:
        send, receive = anyio.create_memory_object_stream[tuple[str, float]](math.inf)
        self.members.append(send)
        return send, receive

    def leave(self, send: MemoryObjectSendStream[tuple[str, float]]) -> None:
        self.members.remove(send)
        send.close()

    def publish(self, upstream: str, until_wall: float) -> None:
        self.published.append((upstream, until_wall))
        for member in self.members:
            member.send_nowait((upstream, until_wall))


class SharedHealth:
    """A ``HealthStore`` on the wall clock whose cooldowns reach every member of ``hub``."""

    clock: StoreClock = "wall"

    def __init__(self, hub: Hub) -> None:
        self._local = MemoryHealth()
        self._hub = hub
        self._outbox, self._inbox = hub.join()
        self._seam: ClockSeam | None = None
        self.applied = 0  # cooldowns received and applied to a view

    def view(self, upstream: str, policy: CircuitPolicy | None) -> UpstreamHealth:
        return self._local.view(upstream, policy)

    def cooled(self, upstream: str, until: float) -> None:
        assert self._seam is not None, "attach() comes with the manager, before any request"
        self._hub.publish(upstream, self._seam.to_store(until, self.clock))

    def attach(self, seam: ClockSeam) -> None:
        self._seam = seam

    async def run(self) -> None:
        seam = self._seam
        assert seam is not None, "attach() comes first"
        try:
            with self._inbox:
                async for upstream, until_wall in self._inbox:
                    view = self._local.view(upstream, None)
                    until = seam.to_loop(until_wall, self.clock)
                    view.cooldown_until = max(view.cooldown_until, until)
                    self.applied += 1
        finally:
            self._hub.leave(self._outbox)
