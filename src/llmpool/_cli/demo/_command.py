"""The ``demo`` subcommand: its options, and from them a ``DemoOptions`` to run.

Only the standard library, llmpool's public API, ``llmpool._constants`` and the demo's own
modules are imported here; ``rich`` and the simulated provider are imported when the demo runs
(``_run``), and a missing one is reported with the extra to install.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pydantic

from llmpool import PoolConfig, Priority, RetryPolicy
from llmpool import _constants as C
from llmpool._cli._command import Command, UsageError

from ._cluster import run_cluster
from ._options import (
    DEFAULT_FAULT_PLAN,
    DEFAULT_MODEL,
    DEFAULT_REQUESTS,
    DEFAULT_SEED,
    DEFAULT_STAGGER,
    DEFAULT_TERMINALS,
    ClusterOptions,
    DemoOptions,
)
from ._run import run_demo

__all__ = ["COMMAND", "add_arguments", "cluster_options_from", "options_from", "run"]

_DEMO_DESCRIPTION = """\
Many terminals, one connection manager: N terminals (sessions terminal-1 ...) each send M
requests, one after the other, with staggered starts and mixed priorities, all through one
llmpool.ConnectionManager. Ends with a table per terminal and per priority and the
manager's stats; exits 0 only if every request completed.

Without --base-url (or OPENAI_BASE_URL) it runs against the simulated provider started
in-process, with 429s carrying Retry-After, some 500/503 answers and 0.2-0.8 s latency.

With --instances N it runs N processes instead, each with its own ConnectionManager, sharing
one small quota through a local Redis (llmpool.redis), and shows what the provider saw
against it; exits 0 only if every request completed and no window went over the quota.
"""

_DEMO_EPILOG = """\
examples:
  llmpool demo --terminals 10 --requests 5
  llmpool demo --no-faults --json
  llmpool demo --via-server --terminals 10 --backend trio
  llmpool demo --instances 3 --duration 20 --rpm 120
  llmpool demo --fault-plan '{"error_rates": {"503": 0.2}, "rate_limit_rate": 0.1}'
  llmpool demo --fault-plan @faults.json --seed 42
  OPENAI_API_KEY=sk-... llmpool demo --base-url https://api.openai.com/v1
  llmpool demo --base-url http://localhost:11434/v1 --api-key ollama --model llama3.2 --api chat
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text}")
    return value


def _given(value: float | None, default: float) -> float:
    """An option's value, or its default where the two modes differ (``--latency-*``)."""
    return default if value is None else value


def _json_object(text: str) -> dict[str, Any]:
    try:
        source = Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text[1:]}: {exc.strerror}") from None
    try:
        value = json.loads(source)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object of FaultPlan fields")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the demo's options to its parser (``llmpool demo --help`` lists them)."""
    run = p.add_argument_group("the run")
    run.add_argument(
        "--terminals", type=_positive_int, default=DEFAULT_TERMINALS, metavar="N",
        help="terminals (sessions terminal-1 ... terminal-N) (default: %(default)s)",
    )  # fmt: skip
    run.add_argument(
        "--requests", type=_positive_int, default=DEFAULT_REQUESTS, metavar="M",
        help="requests per terminal, sent one after the other (default: %(default)s)",
    )  # fmt: skip
    run.add_argument(
        "--stagger", type=_seconds, default=DEFAULT_STAGGER, metavar="SECONDS",
        help="seconds between two terminals' starts (default: %(default)s)",
    )  # fmt: skip
    run.add_argument(
        "--priority", choices=[p.value for p in Priority], default=None,
        help="give every terminal this priority (default: high, normal, low in turn)",
    )  # fmt: skip
    run.add_argument(
        "--api", choices=["responses", "chat"], default="responses",
        help="responses.create or chat.completions.create (default: %(default)s)",
    )  # fmt: skip
    run.add_argument(
        "--model", default=DEFAULT_MODEL, help="model to request (default: %(default)s)"
    )
    run.add_argument(
        "--backend", choices=["asyncio", "trio"], default="asyncio",
        help="anyio backend to run on (default: %(default)s)",
    )  # fmt: skip
    run.add_argument(
        "--via-server", action="store_true",
        help="each terminal is a WebSocket client of an in-process llmpool.server in front of "
        "the manager: its requests are streamed chat turns; the report adds the server's "
        "metrics (needs the 'server' extra; no terminal-hop)",
    )  # fmt: skip
    run.add_argument(
        "--json", action="store_true",
        help="print one JSON summary (config, per_terminal, per_priority, totals, failures, "
        "simulator, stats) instead of the live display and table",
    )  # fmt: skip

    endpoint = p.add_argument_group("the endpoint")
    endpoint.add_argument(
        "--base-url", default=None, metavar="URL",
        help="an OpenAI-compatible endpoint, e.g. https://api.openai.com/v1 or "
        "http://localhost:8000/v1 (default: $OPENAI_BASE_URL; unset: the simulated provider)",
    )  # fmt: skip
    endpoint.add_argument(
        "--api-key", default=None, metavar="KEY",
        help="API key (default: $OPENAI_API_KEY with a real endpoint, the simulator's own key "
        "otherwise; a wrong key makes the simulator answer 401)",
    )  # fmt: skip

    cluster = p.add_argument_group(
        "several instances (--instances: processes sharing one quota through Redis; "
        "uses --model, --backend, --seed, --latency-*)"
    )
    cluster.add_argument(
        "--instances", type=_positive_int, default=None, metavar="N",
        help="run N processes, each its own ConnectionManager on one local Redis "
        "(redis-server, the 'redis' extra), sharing the quota below; no terminals "
        f"(default: off; make demo-cluster: {C.DEMO_CLUSTER_INSTANCES})",
    )  # fmt: skip
    cluster.add_argument(
        "--callers", type=_positive_int, default=C.DEMO_CLUSTER_CALLERS, metavar="N",
        help="callers per instance, each sending back to back (default: %(default)s)",
    )  # fmt: skip
    cluster.add_argument(
        "--duration", type=_seconds, default=C.DEMO_CLUSTER_DURATION, metavar="SECONDS",
        help="seconds the callers send new requests; queued ones then finish "
        "(default: %(default)s)",
    )  # fmt: skip
    cluster.add_argument(
        "--rpm", type=_positive_int, default=C.DEMO_CLUSTER_RPM, metavar="N",
        help="shared requests per minute, all instances (default: %(default)s)",
    )  # fmt: skip
    cluster.add_argument(
        "--tpm", type=_positive_int, default=C.DEMO_CLUSTER_TPM, metavar="N",
        help="shared tokens per minute, all instances (default: %(default)s)",
    )  # fmt: skip
    cluster.add_argument(
        "--global-concurrency", type=_positive_int, default=C.DEMO_CLUSTER_CONCURRENCY,
        metavar="N", help="requests in flight at once, all instances (default: %(default)s)",
    )  # fmt: skip

    pool = p.add_argument_group("the pool (llmpool.PoolConfig)")
    pool.add_argument(
        "--pool-size", type=_positive_int, default=C.DEFAULT_POOL_SIZE, metavar="N",
        help="pooled AsyncOpenAI clients (default: %(default)s)",
    )  # fmt: skip
    pool.add_argument(
        "--max-concurrency", type=_positive_int, default=C.DEFAULT_MAX_CONCURRENCY, metavar="N",
        help="attempts in flight at once (default: %(default)s)",
    )  # fmt: skip
    pool.add_argument(
        "--queue-timeout", type=float, default=C.DEFAULT_QUEUE_TIMEOUT, metavar="SECONDS",
        help="longest wait for a slot (default: %(default)s)",
    )  # fmt: skip
    pool.add_argument(
        "--request-timeout", type=float, default=C.DEFAULT_REQUEST_TIMEOUT, metavar="SECONDS",
        help="longest single attempt (default: %(default)s)",
    )  # fmt: skip
    pool.add_argument(
        "--max-attempts", type=_positive_int, default=C.DEFAULT_MAX_ATTEMPTS, metavar="N",
        help="attempts per request, the first included (default: %(default)s)",
    )  # fmt: skip

    sim = p.add_argument_group("the simulated provider (ignored with a real endpoint)")
    sim.add_argument(
        "--seed", type=int, default=DEFAULT_SEED,
        help="seed of the simulator's random faults and latencies (default: %(default)s)",
    )  # fmt: skip
    sim.add_argument(
        "--latency-min", type=_seconds, default=None, metavar="SECONDS",
        help="shortest simulated service time (default: "
        f"{DEFAULT_FAULT_PLAN['latency_min']}; with --instances {C.DEMO_CLUSTER_LATENCY_MIN})",
    )  # fmt: skip
    sim.add_argument(
        "--latency-max", type=_seconds, default=None, metavar="SECONDS",
        help="longest simulated service time (default: "
        f"{DEFAULT_FAULT_PLAN['latency_max']}; with --instances {C.DEMO_CLUSTER_LATENCY_MAX})",
    )  # fmt: skip
    sim.add_argument(
        "--no-faults", action="store_true",
        help="no 429s and no 5xx: only latency (default: 429 8%% with Retry-After 1 s, "
        "500 5%%, 503 3%%)",
    )  # fmt: skip
    sim.add_argument(
        "--no-hop", action="store_true",
        help="skip terminal-hop, the streamed conversation that hops between two more "
        "simulated instances and recovers (docs/recovery.md)",
    )  # fmt: skip
    sim.add_argument(
        "--fault-plan", type=_json_object, default=None, metavar="JSON",
        help="llmpool.testing.FaultPlan fields as a JSON object (or @file.json); replaces the "
        "default faults, keeps --latency-*/--seed unless it sets them, "
        "e.g. '{\"error_rates\": {\"503\": 0.2}, \"drop_rate\": 0.05}'",
    )  # fmt: skip


def options_from(args: argparse.Namespace) -> DemoOptions:
    """The ``DemoOptions`` of parsed ``llmpool demo`` arguments.

    Raises:
        UsageError: the pool options do not make a valid ``PoolConfig``.
    """
    try:
        pool = PoolConfig(
            pool_size=args.pool_size,
            max_concurrency=args.max_concurrency,
            queue_timeout=args.queue_timeout,
            request_timeout=args.request_timeout,
            retry=RetryPolicy(max_attempts=args.max_attempts),
        )
    except pydantic.ValidationError as exc:
        raise UsageError(str(exc)) from exc
    plan: dict[str, Any] = {
        **DEFAULT_FAULT_PLAN,
        "latency_min": _given(args.latency_min, DEFAULT_FAULT_PLAN["latency_min"]),
        "latency_max": _given(args.latency_max, DEFAULT_FAULT_PLAN["latency_max"]),
        "seed": args.seed,
    }
    if args.no_faults or args.fault_plan is not None:
        # A --fault-plan states the faults: it replaces the default ones, not adds to them.
        plan.update(error_rates={}, rate_limit_rate=0.0)
    plan.update(args.fault_plan or {})
    return DemoOptions(
        terminals=args.terminals,
        requests=args.requests,
        stagger=args.stagger,
        priority=None if args.priority is None else Priority(args.priority),
        api=args.api,
        model=args.model,
        base_url=args.base_url,
        api_key=args.api_key,
        fault_plan=plan,
        pool=pool,
        json=args.json,
        backend=args.backend,
        hop=not args.no_hop,
        via_server=args.via_server,
    )


def cluster_options_from(args: argparse.Namespace) -> ClusterOptions:
    """The ``ClusterOptions`` of parsed ``llmpool demo --instances N`` arguments.

    Raises:
        UsageError: ``--instances`` with an option it cannot honour (``--via-server``,
            ``--base-url``, ``--json``).
    """
    for given, flag in (
        (args.via_server, "--via-server"),
        (args.base_url is not None, "--base-url"),
        (args.json, "--json"),
    ):
        if given:
            raise UsageError(f"--instances runs on the simulated provider only: drop {flag}")
    return ClusterOptions(
        instances=args.instances,
        callers=args.callers,
        duration=args.duration,
        rpm=args.rpm,
        tpm=args.tpm,
        concurrency=args.global_concurrency,
        model=args.model,
        latency_min=_given(args.latency_min, C.DEMO_CLUSTER_LATENCY_MIN),
        latency_max=_given(args.latency_max, C.DEMO_CLUSTER_LATENCY_MAX),
        seed=args.seed,
        backend=args.backend,
    )


def run(args: argparse.Namespace) -> int:
    """Run ``llmpool demo``: 0 if every request completed, 1 if one failed.

    With ``--instances``: 0 only if, as well, the provider saw no overshoot of the quota.

    Raises:
        UsageError: the pool options do not make a valid ``PoolConfig``; ``--instances``
            with ``--via-server``, ``--base-url`` or ``--json``.
        SetupError: no API key for a real endpoint, or a fault plan the simulator rejects;
            for ``--instances``, no redis-server on PATH or an instance that failed to start.
        MissingExtraError: an extra the demo needs is not installed.
    """
    if args.instances is not None:
        return run_cluster(cluster_options_from(args))
    return run_demo(options_from(args))


COMMAND = Command(
    name="demo",
    help="many terminals through one ConnectionManager (simulated provider by default)",
    description=_DEMO_DESCRIPTION,
    epilog=_DEMO_EPILOG,
    add_arguments=add_arguments,
    run=run,
)
"""``llmpool demo``."""
