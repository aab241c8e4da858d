"""The ``llmpool`` command line: ``llmpool demo`` (see ``docs/demo.md``).

Only the standard library, llmpool's core and ``_demo`` are imported here; ``rich`` and the
simulated provider are imported when the demo runs, and a missing one is reported with the
extra to install.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydantic

from . import _constants as C
from . import _demo as demo
from ._config import PoolConfig, RetryPolicy
from ._types import Priority

__all__ = ["build_parser", "main"]

_DEMO_DESCRIPTION = """\
Many terminals, one connection manager: N terminals (sessions terminal-1 ...) each send M
requests, one after the other, with staggered starts and mixed priorities, all through one
llmpool.ConnectionManager. Ends with a table per terminal and per priority and the
manager's stats; exits 0 only if every request completed.

Without --base-url (or OPENAI_BASE_URL) it runs against the simulated provider started
in-process, with 429s carrying Retry-After, some 500/503 answers and 0.2-0.8 s latency.
"""

_DEMO_EPILOG = """\
examples:
  llmpool demo --terminals 10 --requests 5
  llmpool demo --no-faults --json
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


def build_parser() -> argparse.ArgumentParser:
    """The ``llmpool`` argument parser, with its ``demo`` subcommand."""
    parser = argparse.ArgumentParser(
        prog="llmpool", description="llmpool: pooled, prioritised, retrying OpenAI clients."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = commands.add_parser(
        "demo",
        help="many terminals through one ConnectionManager (simulated provider by default)",
        description=_DEMO_DESCRIPTION,
        epilog=_DEMO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    run = p.add_argument_group("the run")
    run.add_argument(
        "--terminals", type=_positive_int, default=demo.DEFAULT_TERMINALS, metavar="N",
        help="terminals (sessions terminal-1 ... terminal-N) (default: %(default)s)",
    )  # fmt: skip
    run.add_argument(
        "--requests", type=_positive_int, default=demo.DEFAULT_REQUESTS, metavar="M",
        help="requests per terminal, sent one after the other (default: %(default)s)",
    )  # fmt: skip
    run.add_argument(
        "--stagger", type=_seconds, default=demo.DEFAULT_STAGGER, metavar="SECONDS",
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
        "--model", default=demo.DEFAULT_MODEL, help="model to request (default: %(default)s)"
    )
    run.add_argument(
        "--backend", choices=["asyncio", "trio"], default="asyncio",
        help="anyio backend to run on (default: %(default)s)",
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
        "--seed", type=int, default=demo.DEFAULT_SEED,
        help="seed of the simulator's random faults and latencies (default: %(default)s)",
    )  # fmt: skip
    sim.add_argument(
        "--latency-min", type=_seconds, default=demo.DEFAULT_FAULT_PLAN["latency_min"],
        metavar="SECONDS", help="shortest simulated service time (default: %(default)s)",
    )  # fmt: skip
    sim.add_argument(
        "--latency-max", type=_seconds, default=demo.DEFAULT_FAULT_PLAN["latency_max"],
        metavar="SECONDS", help="longest simulated service time (default: %(default)s)",
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
    return parser


def _options(args: argparse.Namespace) -> demo.DemoOptions:
    pool = PoolConfig(
        pool_size=args.pool_size,
        max_concurrency=args.max_concurrency,
        queue_timeout=args.queue_timeout,
        request_timeout=args.request_timeout,
        retry=RetryPolicy(max_attempts=args.max_attempts),
    )
    plan: dict[str, Any] = {
        **demo.DEFAULT_FAULT_PLAN,
        "latency_min": args.latency_min,
        "latency_max": args.latency_max,
        "seed": args.seed,
    }
    if args.no_faults or args.fault_plan is not None:
        # A --fault-plan states the faults: it replaces the default ones, not adds to them.
        plan.update(error_rates={}, rate_limit_rate=0.0)
    plan.update(args.fault_plan or {})
    return demo.DemoOptions(
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
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``llmpool`` command line.

    Args:
        argv: the arguments after the program name; ``sys.argv[1:]`` by default.

    Returns:
        The exit status: 0 success, 1 some demo request failed, 2 a usage or setup error,
        130 interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "demo":
        parser.print_help(sys.stderr)
        return 2
    try:
        options = _options(args)
    except pydantic.ValidationError as exc:
        parser.error(str(exc))  # exits with status 2
    try:
        return demo.run_demo(options)
    except (demo.MissingExtraError, ValueError) as exc:
        # ValueError covers a missing API key and an invalid --fault-plan (pydantic).
        sys.stderr.write(f"llmpool demo: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("llmpool demo: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
