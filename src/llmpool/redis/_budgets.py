"""``RedisBudgets``: RPM, TPM and concurrency shared by every instance, one script per admission.

The scheduler stays local (priority, fairness, queueing); only the *head* of a budget's local
queue asks Redis. The grant decision is synchronous, so a budget's view (``SharedLimits``)
answers the scheduler's ``wait_for`` with ``inf`` while it asks: the question goes to one
worker task that sends everything waiting in one pipeline (admissions, settlements, learned
limits, cooldowns), and the answer wakes the scheduler (``wake``). A permit that nobody takes
at once is handed back. A budget Redis says is short waits for a timer set to the wait the
script returned; a budget whose every concurrency slot is leased waits for a ``release``
message on the upstream's channel (or, should one be lost, the first lease's expiry). A
release that arrives while the question is on its way is not lost: each upstream counts its
releases (``epoch``), and an answer "full" given before the latest one is asked again.

**Without Redis** (a round trip failed or took over ``redis_timeout``), each instance enforces
its share alone: ``floor(limit / live instances)`` of every limit, in window-safe buckets that
start *empty* (so the window that straddles the switch stays within the limit: docs/redis.md
proves it), and a warning is logged. A probe every ``probe_interval`` brings it back, at one
instant for every instance: the shared buckets are emptied (a debt stays), its requests
still in flight adopt leases, and the shared budgets take over. Nothing is lost either way:
a request whose question failed stays queued and is decided by the next path. With
``fail_closed`` it waits for Redis instead (``QueueTimeoutError`` after ``queue_timeout``).
An instance that never reached Redis holds its requests until it does.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import secrets
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from llmpool._config import RateLimitPolicy
from llmpool._limits import UpstreamLimits
from llmpool._state import ClockSeam, StoreClock

from ._budget_scripts import ADMIT, DRAIN, HEARTBEAT, LEASES, REJOIN, SETTLE
from ._constants import DEFAULT_LIVE_HORIZON, SETTLE_LINGER
from ._keys import UpstreamKeys, instances_key, members_channel, upstream_keys
from ._policy import SharedBudgetPolicy
from ._shared_limits import Permit, SharedLimits, _Ask, _Command, _Op, _Settle
from ._wire import Wire, WireError

if TYPE_CHECKING:
    import coredis

__all__ = ["Permit", "RedisBudgets", "SharedLimits"]

logger = logging.getLogger("llmpool.redis")

_RELEASE: Final = "release"
_COOLDOWN: Final = "cooldown "


class RedisBudgets:
    """``BudgetStore`` on Redis: one RPM/TPM budget per (upstream, model), one cap per upstream.

    Every instance with the same Redis and prefix shares them.

    Made by ``RedisState.stores()``; one per manager. Algorithms: the module docstring and
    docs/redis.md.

    Args:
        client: an open coredis client (``decode_responses=True``).
        prefix: the first part of every key (already checked).
        policy: the global cap and how Redis is used.
        url: the client's URL, for the worker's own connection (``_wire``: admissions,
            settlements, loading the scripts, and the probe while Redis is away).

    Attributes:
        instance: this instance's id (12 hex digits), in the live set and its leases' ids.
        alone: Redis is unreachable: this instance enforces its share alone.
        live: live instances, this one included, as the last heartbeat or a join counted.
        share: the live count taken when Redis was lost (each limit divided by it).
        switches: times Redis was lost.
        subscribed: the release listener's subscription is made (and the cooldowns in
            force were read).
    """

    clock: StoreClock = "wall"

    def __init__(
        self,
        client: coredis.Redis[str],
        *,
        prefix: str,
        policy: SharedBudgetPolicy,
        url: str,
    ) -> None:
        self._client = client
        self._url = url
        self._wire = Wire(url)
        self._prefix = prefix
        self._members = members_channel(prefix)
        self.policy = policy
        self.instance = f"{secrets.token_hex(6)}"
        self._views: dict[str, dict[str | None, SharedLimits]] = {}
        self._keys: dict[str, UpstreamKeys] = {}
        self._admit = client.register_script(ADMIT)
        self._settle = client.register_script(SETTLE)
        self._leases = client.register_script(LEASES)
        self._heartbeat = client.register_script(HEARTBEAT)
        self._rejoin = client.register_script(REJOIN)
        self._drain = client.register_script(DRAIN)
        self._ids = itertools.count(1)
        # The worker's queues, questions apart from the rest (settlements, commands): opened
        # by attach (the manager opening), closed when run ends.
        self._outbox: MemoryObjectSendStream[_Op] | None = None
        self._inbox: MemoryObjectReceiveStream[_Op] | None = None
        self._asks_out: MemoryObjectSendStream[_Op] | None = None
        self._asks_in: MemoryObjectReceiveStream[_Op] | None = None
        self._asked = _SET  # set when a question is queued (the worker's, once it runs)
        self._idle: anyio.CancelScope | None = None  # the worker's wait, while it waits
        self._held: dict[str, dict[str, Permit]] = {}  # upstream -> lease -> permit in flight
        self._in_flight: Counter[str] = Counter()  # permits in flight per upstream, any mode
        self._epoch: Counter[str] = Counter()  # release messages seen per upstream
        self._timers: list[tuple[float, int, SharedLimits]] = []
        self._timer_order = itertools.count()
        self._timer_scope: anyio.CancelScope | None = None
        self._seam: ClockSeam | None = None
        self._wake: Callable[[], None] = _nothing
        self._now: Callable[[], float] = anyio.current_time
        self.alone = False
        self.alone_since = 0.0
        self.live = 1  # live instances, this one included, as the last heartbeat counted
        self.share = 1  # the live instances when Redis was lost: each takes 1/share alone
        self._counted = False  # a heartbeat has been answered (the live count is known)
        self._recount = _SET  # set to count the live instances now rather than at the next beat
        self._joined = 0  # the highest count a joining instance published since the last beat
        self._shared = _SET  # set while Redis answers; a new one while alone
        self.cooldown_handlers: list[Callable[[str, float], None]] = []
        self.switches = 0  # times Redis was lost (for tests and stats)
        self.subscribed = False  # the release listener's subscription is made
        self._hearing: set[str] = set()  # upstreams whose channel the listener is subscribed to
        self._more = _SET  # set when an upstream appears that the listener does not hear yet

    # -- BudgetStore ---------------------------------------------------------------------------

    def limits(self, upstream: str, model: str | None, policy: RateLimitPolicy) -> UpstreamLimits:
        """The view of (``upstream``, ``model``), created on first use."""
        per_model = self._views.get(upstream)
        if per_model is None:
            per_model = self._views[upstream] = {}
            self._more.set()  # the listener subscribes to its channel
        view = per_model.get(model)
        if view is None:
            view = per_model[model] = SharedLimits(
                self, upstream, model, policy, self.keys(upstream)
            )
        return view

    def models(self, upstream: str) -> Mapping[str | None, UpstreamLimits]:
        """Every view of ``upstream`` so far, by model: the live mapping."""
        return self._views.setdefault(upstream, {})

    def keys(self, upstream: str) -> UpstreamKeys:
        """``upstream``'s keys."""
        keys = self._keys.get(upstream)
        if keys is None:
            keys = self._keys[upstream] = upstream_keys(self._prefix, upstream)
        return keys

    def attach(self, seam: ClockSeam, wake: Callable[[], None]) -> None:
        """Take the clock seam and the scheduler's wake-up."""
        self._seam = seam
        self._wake = wake
        self._now = seam.loop
        self._outbox, self._inbox = anyio.create_memory_object_stream[_Op](math.inf)
        self._asks_out, self._asks_in = anyio.create_memory_object_stream[_Op](math.inf)

    async def run(self) -> None:
        """The worker, the release listener, the heartbeat and the timers, until cancelled.

        On the way out this instance leaves the live ones (best effort, within
        ``redis_timeout``), so the others' shares grow at once should Redis go away.
        """
        outbox, inbox, asks_out, asks_in = (
            self._outbox,
            self._inbox,
            self._asks_out,
            self._asks_in,
        )
        if outbox is None or inbox is None or asks_out is None or asks_in is None:
            raise RuntimeError("attach() comes before run()")
        try:
            try:
                await self._load_scripts()
            except _failures() as error:
                self._lost(error)  # unreachable from the start: alone until the probe succeeds
            async with anyio.create_task_group() as group:
                group.start_soon(self._work, asks_in, inbox, name="llmpool.redis worker")
                group.start_soon(self._listen, name="llmpool.redis release listener")
                group.start_soon(self._beat, name="llmpool.redis heartbeat")
                group.start_soon(self._time, name="llmpool.redis budget timers")
        finally:
            for stream in (outbox, inbox, asks_out, asks_in):
                stream.close()
            with anyio.move_on_after(self.policy.redis_timeout, shield=True):
                try:
                    await self._client.zrem(instances_key(self._prefix), [self.instance])
                except _failures():
                    pass
            await self._wire.aclose()

    # -- what the views ask for (synchronous, on the event loop) ----------------------------

    def _send_op(self, op: _Op) -> None:
        outbox = self._asks_out if isinstance(op, _Ask) else self._outbox
        if outbox is None:
            raise RuntimeError("a RedisBudgets is used by the manager it was attached to")
        try:
            outbox.send_nowait(op)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            if isinstance(op, _Ask):
                op.view.asking = False  # the manager is closing: nothing more is admitted
            return
        if isinstance(op, _Ask):
            self._asked.set()
        else:
            idle = self._idle
            if idle is not None and idle.deadline == math.inf:
                idle.deadline = anyio.current_time() + SETTLE_LINGER

    def hears(self, upstream: str) -> bool:
        """Whether the listener is subscribed to ``upstream``'s channel.

        A view asks Redis only then: an answer "every slot is leased" waits for a release
        message, and one published before the subscription would never be heard (the view
        would wait for the first lease's expiry). The subscription wakes the scheduler.
        """
        return upstream in self._hearing

    def ask(self, view: SharedLimits, tokens: int) -> None:
        """Ask Redis to admit one request of ``tokens`` for ``view``."""
        lease = f"{self.instance}:{next(self._ids)}"
        self._send_op(_Ask(view, tokens, lease, self._epoch[view.upstream]))

    def hold(self, view: SharedLimits, permit: Permit) -> None:
        """``permit`` was taken by a request: in flight until ``end``."""
        self._held.setdefault(view.upstream, {})[permit.lease] = permit
        self._in_flight[view.upstream] += 1

    def hand_back(self, view: SharedLimits, permit: Permit) -> None:
        """A permit nobody took: its request, tokens and lease go back."""
        self._send_op(_Settle(view, permit.lease, 1, permit.tokens, True))

    def end(self, view: SharedLimits, permit: Permit, *, requests: int, tokens: int) -> None:
        """A taken permit's request ended (``requests``/``tokens``: what goes back)."""
        held = self._held.get(view.upstream)
        if held is not None and held.pop(permit.lease, None) is not None:
            self._in_flight[view.upstream] -= 1
        if permit.shared:
            if not self.alone:
                self._send_op(_Settle(view, permit.lease, requests, tokens, True))
            # else: Redis is away; the lease ends by itself, the budget stays spent
        else:
            view.alone_give(requests, tokens, self._now())
            if not self.alone:  # admitted alone, ended after the way back: its lease too
                self._send_op(_Settle(view, permit.lease, 0, 0, True))

    def share_limits(self, view: SharedLimits, limits: tuple[int, int]) -> None:
        """Limits learned from headers, for every instance's admissions."""
        if self.alone:
            return
        rpm, tpm = limits
        values: list[str] = []
        if rpm:
            values += ["lr", str(rpm)]
        if tpm:
            values += ["lt", str(tpm)]
        if values:
            self._send_op(_Command("hset", (view.keys.budget(view.model), values)))

    def publish_cooldown(self, upstream: str, until_ms: int, ttl_ms: int) -> None:
        """Tell every instance that ``upstream`` cools down until ``until_ms`` (Unix ms)."""
        if self.alone or ttl_ms <= 0:
            return
        keys = self.keys(upstream)
        self._send_op(_Command("set", (keys.cooldown, str(until_ms), ttl_ms)))
        self._send_op(_Command("publish", (keys.channel, f"{_COOLDOWN}{until_ms}")))

    # -- alone -------------------------------------------------------------------------------

    def alone_wait(self, view: SharedLimits, tokens: int, now: float) -> float:
        """``view.wait_for`` while Redis is unreachable."""
        if self.policy.fail_closed or self.share == 0:
            return math.inf  # held until Redis is back (the way back wakes the scheduler)
        cap = self.policy.concurrency
        if cap is not None and self._in_flight[view.upstream] >= cap // self.share:
            return math.inf  # a release here re-runs the grant (the scheduler's own)
        return view.alone_wait(tokens, now)

    def alone_take(self, view: SharedLimits, tokens: int) -> Permit:
        """``view.take`` while Redis is unreachable: from this instance's share."""
        permit = Permit(f"{self.instance}:{next(self._ids)}", tokens, shared=False, at=self._now())
        view.alone_take(permit)
        self.hold(view, permit)
        return permit

    def _lost(self, error: BaseException) -> None:
        """Redis failed: every view goes alone on its share, and the scheduler re-decides."""
        if self.alone:
            return
        self.alone = True
        self._shared = anyio.Event()
        self._recount.set()  # the heartbeat turns to probing now, not after its interval
        self.switches += 1
        now = self.alone_since = self._now()
        # An instance that never heard from Redis cannot know its share: it holds requests
        # (share 0) until Redis answers, rather than take a whole limit for itself.
        share = self.share = max(1, self.live) if self._counted else 0
        logger.warning(
            "llmpool.redis: Redis unreachable (%s: %s); each of %d live instance(s) now "
            "enforces its share of every limit alone%s",
            type(error).__name__,
            str(error),  # the text only: a record must not keep the traceback's frames alive
            share,
            " (fail_closed: holding requests)" if self.policy.fail_closed else "",
        )
        for per_model in self._views.values():
            for view in per_model.values():
                view.go_alone(max(1, share), now)
        self._timers.clear()
        self._wake()

    async def _return(self) -> None:
        """Redis answers again: charge what was admitted alone, adopt leases, share again.

        Raises:
            coredis.exceptions.RedisError, OSError, TimeoutError: Redis failed again (nothing
                changed here: still alone).
        """
        views = [view for per_model in self._views.values() for view in per_model.values()]
        adopted = {
            upstream: [permit for permit in held.values() if not permit.shared]
            for upstream, held in self._held.items()
        }
        ttl = str(_ms(self.policy.lease_ttl))
        await self._load_scripts()  # a Redis that restarted has none

        def build(pipe: Any) -> list[Any]:
            calls = []
            for view in views:
                if view.limited and (view.requests is not None or view.tokens is not None):
                    rpm, tpm = view.configured_limits()
                    calls.append(
                        self._eval(
                            self._drain,
                            [view.keys.budget(view.model)],
                            [
                                str(rpm),
                                str(tpm),
                                repr(view.policy.burst),
                                repr(self.policy.window_margin),
                            ],
                            pipe,
                        )
                    )
            if self.policy.concurrency is not None:
                for upstream, permits in adopted.items():
                    if permits:
                        leases = [permit.lease for permit in permits]
                        calls.append(
                            self._eval(
                                self._leases,
                                [self.keys(upstream).leases],
                                ["NX", ttl, *leases],
                                pipe,
                            )
                        )
            return calls

        await self._run(build)
        for view in views:
            view.come_back()
        for upstream, permits in adopted.items():
            held = self._held.get(upstream, {})
            for permit in permits:
                permit.shared = True
                if permit.lease not in held:  # it ended during the round trip: end its lease
                    self._send_op(_Command("zrem", (self.keys(upstream).leases, permit.lease)))
        self.alone = False
        self._shared.set()
        logger.warning("llmpool.redis: Redis reachable again; budgets are shared again")
        self._wake()

    # -- background tasks ----------------------------------------------------------------------

    async def _run(self, build: Callable[[Any], list[Any]]) -> list[Any]:
        """Send the commands ``build(pipe)`` queues in one pipeline; their replies, in order.

        No transaction; the whole round trip within ``redis_timeout``.

        Raises:
            coredis.exceptions.RedisError, OSError: Redis failed or is unreachable.
            TimeoutError: no answer within ``redis_timeout``.
        """
        with anyio.fail_after(self.policy.redis_timeout):
            async with self._client.pipeline(transaction=False) as pipe:
                requests = build(pipe)
            return [await request for request in requests]

    def _eval(self, script: Any, keys: list[str], args: list[str], pipe: Any) -> Any:
        """``script`` on ``keys``/``args`` in ``pipe``, as a bare EVALSHA.

        coredis checks every script of a pipeline with ``SCRIPT EXISTS`` first, one more round
        trip each time; the scripts are loaded once instead (``_load_scripts``) and again
        whenever Redis comes back. A script missing all the same (``SCRIPT FLUSH``) fails the
        pipeline like any Redis error: the instance goes alone, and its way back loads them.
        """
        return pipe.evalsha(script.sha, keys=keys, args=args)

    async def _load_scripts(self) -> None:
        """Load every budget script into Redis's script cache (``SCRIPT LOAD``).

        Raises:
            WireError: Redis refused one (the text is Redis's).
            OSError, anyio.BrokenResourceError, anyio.EndOfStream: Redis is unreachable.
            TimeoutError: no answer within ``redis_timeout``.
        """
        with anyio.fail_after(self.policy.redis_timeout):  # all five in one round trip
            await self._wire.execute(
                [("SCRIPT", "LOAD", text) for text in (ADMIT, SETTLE, LEASES, HEARTBEAT, DRAIN)]
            )

    def _settle_args(self, op: _Settle) -> tuple[list[str], list[str]]:
        view = op.view
        rpm, tpm = view.configured_limits()
        return [view.keys.budget(view.model), view.keys.leases], [
            op.lease,
            str(op.requests),
            str(op.tokens),
            str(rpm),
            str(tpm),
            repr(view.policy.burst),
            repr(self.policy.window_margin),
            view.keys.channel if op.tell else "",
            str(self.policy.concurrency or 0),
        ]

    def _admit_args(self, op: _Ask) -> tuple[list[str], list[str]]:
        view = op.view
        rpm, tpm = view.configured_limits()
        return [view.keys.budget(view.model), view.keys.leases], [
            op.lease,
            str(op.tokens),
            str(rpm),
            str(tpm),
            str(self.policy.concurrency or 0),
            str(_ms(self.policy.lease_ttl)),
            repr(view.policy.burst),
            repr(self.policy.window_margin),
        ]

    def _resp(self, op: _Op) -> tuple[str, ...]:
        """``op`` as one Redis command (its name and arguments), for the wire."""
        if isinstance(op, _Ask | _Settle):
            script = self._admit if isinstance(op, _Ask) else self._settle
            keys, args = self._admit_args(op) if isinstance(op, _Ask) else self._settle_args(op)
            return ("EVALSHA", script.sha, str(len(keys)), *keys, *args)
        if op.name == "hset":
            key, values = op.args
            return ("HSET", key, *values)
        if op.name == "zrem":
            key, lease = op.args
            return ("ZREM", key, lease)
        if op.name == "set":
            key, value, ttl = op.args
            return ("SET", key, value, "PX", str(ttl))
        channel, message = op.args
        return ("PUBLISH", channel, message)

    async def _work(
        self, asks: MemoryObjectReceiveStream[_Op], rest: MemoryObjectReceiveStream[_Op]
    ) -> None:
        """Send whatever is waiting in one round trip; act on the answers.

        Settlements wait up to ``SETTLE_LINGER`` for a question to ride with (the next
        request's admission usually follows its predecessor's settlement at once): one round
        trip then carries both, the settlement first, so this instance's own release is
        counted before its next question. A question never waits.
        """
        while True:
            self._asked = anyio.Event()  # before taking: a question queued after is not missed
            settlements, questions = _take(rest), _take(asks)
            if not questions:
                # One wait for both: a question ends it at once; a settlement waiting (now or
                # queued during the wait, by _send_op) ends it after SETTLE_LINGER at most.
                with anyio.CancelScope() as idle:
                    self._idle = idle
                    if settlements:  # (one queued from now on sets it: _send_op)
                        idle.deadline = anyio.current_time() + SETTLE_LINGER
                    await self._asked.wait()
                self._idle = None
                settlements += _take(rest)
                questions = _take(asks)
                if not settlements and not questions:
                    continue
            batch = settlements + questions
            if self.alone:
                self._drop(batch)
                continue
            try:
                replies = await self._send(batch)
            except _failures() as error:
                self._drop(batch)
                self._lost(error)
                continue
            self._answer(batch, replies)

    async def _send(self, batch: list[_Op]) -> list[Any]:
        """``batch`` in one round trip, on the worker's own connection.

        That is ``_wire``: about 50 µs on loopback, where coredis takes 250 to 350 µs.
        """
        commands = [self._resp(op) for op in batch]
        with anyio.fail_after(self.policy.redis_timeout):
            return await self._wire.execute(commands)

    def _drop(self, batch: list[_Op]) -> None:
        """Redis is away: questions are forgotten (their views decide alone now)."""
        for op in batch:
            if isinstance(op, _Ask):
                op.view.asking = False

    def _answer(self, batch: list[_Op], replies: list[Any]) -> None:
        now = self._now()
        granted: list[tuple[SharedLimits, Permit]] = []
        for op, reply in zip(batch, replies, strict=True):
            if not isinstance(op, _Ask):
                continue
            view = op.view
            status, value = int(reply[0]), int(reply[1])
            if status == 1:
                permit = Permit(op.lease, op.tokens, shared=True, at=now)
                view.admitted(permit, (int(reply[2]), int(reply[3])), now)
                granted.append((view, permit))
            elif status == -1 and self._epoch[view.upstream] != op.epoch:
                view.asking = False  # a slot was released since the question: ask again
            else:
                view.asking = False
                view.blocked = True
                self._arm(view, now + value / 1000)
        self._wake()
        for view, permit in granted:
            if view.ready is permit:  # nobody could take it now (no free local slot)
                view.ready = None
                self.hand_back(view, permit)

    def _arm(self, view: SharedLimits, at: float) -> None:
        heapq.heappush(self._timers, (at, next(self._timer_order), view))
        scope = self._timer_scope
        if scope is not None and at < scope.deadline:
            scope.deadline = at

    async def _time(self) -> None:
        """Unblock each view when the wait Redis returned has passed."""
        timers = self._timers
        while True:
            at = timers[0][0] if timers else math.inf
            with anyio.CancelScope(deadline=at) as scope:
                self._timer_scope = scope
                await anyio.sleep_forever()
            self._timer_scope = None
            now = self._now()
            woke = False
            while timers and timers[0][0] <= now:
                view = heapq.heappop(timers)[2]
                if view.blocked:
                    view.blocked = False
                    woke = True
            if woke:
                self._wake()

    def _released(self, upstream: str) -> None:
        """A slot or budget of ``upstream`` came back somewhere: its blocked views ask again."""
        self._epoch[upstream] += 1
        woke = False
        for view in self._views.get(upstream, {}).values():
            if view.blocked:
                view.blocked = False
                woke = True
        if woke:
            self._wake()

    async def _listen(self) -> None:
        """Release and cooldown messages of every upstream known when the manager opened.

        A lost subscription counts as Redis lost; it is made again once Redis is back (no
        reconnection attempts of its own meanwhile: the probe decides).
        """
        members = self._members
        while True:
            if self.alone:
                await self._shared.wait()
            self._more = anyio.Event()
            channels = {self.keys(upstream).channel: upstream for upstream in self._views}
            try:
                async with self._client.pubsub(
                    channels=[members, *channels], ignore_subscribe_messages=True, retry_policy=None
                ) as pubsub:
                    # Subscribed: every instance joining from now on is heard; one count now
                    # takes in those that joined before. Likewise cooldowns: those published
                    # before are read from their keys.
                    self._recount.set()
                    await self._heard_from(channels)
                    self.subscribed = True
                    async with anyio.create_task_group() as group:
                        group.start_soon(self._subscribe_more, pubsub, channels)
                        async for message in pubsub:
                            self._heard(channels, message)
            except _failures() as error:
                self._deaf()
                self._lost(error)
            except BaseExceptionGroup as group:  # coredis's task group (and ours) wrap errors
                self._deaf()
                lost, rest = group.split(_failures())
                if rest is not None or lost is None:
                    raise
                self._lost(_first_leaf(lost))

    async def _subscribe_more(self, pubsub: Any, channels: dict[str, str]) -> None:
        """Subscribe to the channel of every upstream that appears (``limits``) from now on."""
        while True:
            await self._more.wait()
            self._more = anyio.Event()
            new = {
                self.keys(upstream).channel: upstream
                for upstream in self._views
                if upstream not in self._hearing
            }
            if new:
                with anyio.fail_after(self.policy.redis_timeout):
                    await pubsub.subscribe(*new)
                channels.update(new)
                await self._heard_from(new)

    async def _heard_from(self, channels: Mapping[str, str]) -> None:
        """Subscribed to ``channels``: read their cooldowns, then let their views ask."""
        await self._read_cooldowns(channels)
        self._hearing.update(channels.values())
        self._wake()  # views held for their subscription ask now

    def _deaf(self) -> None:
        self.subscribed = False
        self._hearing.clear()

    async def _read_cooldowns(self, channels: Mapping[str, str]) -> None:
        """Apply the cooldowns in force (``…:cooldown`` keys), published before subscribing.

        Raises:
            coredis.exceptions.RedisError, OSError: Redis failed or is unreachable.
            TimeoutError: no answer within ``redis_timeout``.
        """
        upstreams = list(channels.values())
        if not upstreams or not self.cooldown_handlers:
            return
        # One GET per upstream (each in its own hash slot), in one round trip.
        ends = await self._run(
            lambda pipe: [pipe.get(self.keys(upstream).cooldown) for upstream in upstreams]
        )
        for upstream, end in zip(upstreams, ends, strict=True):
            if end is not None:
                self._cooled(upstream, str(end))

    def _heard(self, channels: Mapping[str, str], message: Mapping[str, Any]) -> None:
        channel = str(message.get("channel"))
        data = message.get("data")
        if not isinstance(data, str):
            return
        if channel == self._members:
            live = _int(data)
            if live is not None and not self.alone:
                # An instance joined: count it before the next heartbeat, so a Redis lost
                # meanwhile does not leave this one taking the share of fewer instances.
                self.live = max(self.live, live)
                self._joined = max(self._joined, live)
            return
        upstream = channels.get(channel)
        if upstream is None:
            return
        if data == _RELEASE:
            self._released(upstream)
        elif data.startswith(_COOLDOWN):
            self._cooled(upstream, data[len(_COOLDOWN) :])

    def _cooled(self, upstream: str, until_ms: str) -> None:
        """A cooldown of ``upstream`` until ``until_ms`` (Unix ms, as text) heard or read."""
        until = _int(until_ms)
        if until is not None:
            for handler in self.cooldown_handlers:
                handler(upstream, until / 1000)

    async def _reachable(self) -> bool:
        """Whether Redis answers a ``PING`` within ``redis_timeout``.

        On the worker's connection, made again if it was lost.
        """
        try:
            with anyio.fail_after(self.policy.redis_timeout):
                await self._wire.execute([("PING",)])
        except _failures():
            return False
        return True

    async def _beat(self) -> None:
        """Heartbeats while Redis answers (registration, live count, renewals); else probes."""
        policy = self.policy
        horizon = _ms(policy.heartbeat_interval * DEFAULT_LIVE_HORIZON)
        ttl = _ms(policy.lease_ttl)
        grace = _ms(policy.probe_interval + 2 * policy.redis_timeout)
        key = instances_key(self._prefix)
        members = self._members
        while True:
            if self.alone:
                await anyio.sleep(policy.probe_interval)
                if not await self._reachable():
                    continue
                try:
                    with anyio.fail_after(policy.redis_timeout):
                        delay = int(await self._rejoin([f"{self._prefix}:rejoin"], [str(grace)]))
                    # Still alone until the common instant: every instance probes within
                    # probe_interval, so all come back at once and none admits alone while
                    # another spends the shared budget.
                    await anyio.sleep(max(0, delay) / 1000)
                    await self._return()
                except _failures() as error:
                    logger.debug("llmpool.redis: still unreachable: %s", type(error).__name__)
                continue

            def build(pipe: Any) -> list[Any]:
                calls: list[Any] = [
                    self._eval(self._heartbeat, [key], [self.instance, str(horizon), members], pipe)
                ]
                if policy.concurrency is not None:
                    for upstream, held in self._held.items():
                        leases = [lease for lease, p in held.items() if p.shared]
                        if leases:
                            calls.append(
                                self._eval(
                                    self._leases,
                                    [self.keys(upstream).leases],
                                    ["XX", str(ttl), *leases],
                                    pipe,
                                )
                            )
                return calls

            self._recount = anyio.Event()
            self._joined = 0
            try:
                replies = await self._run(build)
                # A join heard while the beat was out may be newer than its count: keep it.
                self.live = max(1, int(replies[0]), self._joined)
                self._counted = True
            except _failures() as error:
                self._lost(error)
                continue
            with anyio.move_on_after(policy.heartbeat_interval):
                await self._recount.wait()


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    """The first exception in ``group`` that is not itself a group (nested as deep as it is)."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _failures() -> tuple[type[Exception], ...]:
    """What a failed, slow or unreachable Redis raises (coredis's errors and the wire's)."""
    import coredis.exceptions

    return (
        OSError,
        TimeoutError,
        coredis.exceptions.RedisError,
        WireError,
        anyio.BrokenResourceError,
        anyio.EndOfStream,
        anyio.ClosedResourceError,
    )


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _nothing() -> None:
    return None


def _take(stream: MemoryObjectReceiveStream[_Op]) -> list[_Op]:
    """Everything waiting in ``stream`` now (nothing if it is closed)."""
    taken: list[_Op] = []
    while True:
        try:
            taken.append(stream.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            return taken


class _Set:
    """An event that is set, before any event loop exists."""

    async def wait(self) -> None:
        return None

    def set(self) -> None:
        return None


_SET: Any = _Set()
