"""Running ``llmpool demo``: its extras, the endpoint, the simulators, the output.

By default the terminals talk to the simulated provider (``llmpool.testing``) started
in-process with a fault plan of 429s with Retry-After, 5xx answers and realistic latency, and
``terminal-hop`` to two more simulated instances; with a base URL they talk to that endpoint
instead. With ``--via-server`` the terminals reach that endpoint through an in-process
``llmpool.server`` (``_via_server``), and the hop does not run. Prints the rich report, or the
``--json`` summary. The extras (rich, the simulated provider, trio, the server) are imported
here, when the demo runs, through ``llmpool._extras.require``. Above every other demo module
but ``_command``.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Final

import anyio
import pydantic

from llmpool._cli._command import SetupError
from llmpool._extras import require

from ._drive import drive
from ._options import HOP_INSTANCES, SIMULATOR_API_KEY, DemoOptions
from ._results import DemoOutcome, Observer, SimulatorSummary
from ._summary import summarize

if TYPE_CHECKING:
    from llmpool.testing import FaultPlan

__all__ = ["FEATURE", "resolve_endpoint", "run_demo"]

FEATURE: Final = "llmpool demo"
"""How the demo names itself in a missing extra's message."""


def resolve_endpoint(
    options: DemoOptions, environ: Mapping[str, str] | None = None
) -> tuple[str | None, str | None]:
    """The real endpoint and key to use, or ``(None, key)`` for the simulated provider.

    ``options.base_url`` wins over ``OPENAI_BASE_URL``; ``options.api_key`` over
    ``OPENAI_API_KEY``.
    """
    env = os.environ if environ is None else environ
    base_url = options.base_url or env.get("OPENAI_BASE_URL") or None
    api_key = options.api_key or (env.get("OPENAI_API_KEY") if base_url else None) or None
    return base_url, api_key


def run_demo(options: DemoOptions) -> int:
    """Run the demo and print its report (or its JSON summary with ``options.json``).

    Args:
        options: what to run.

    Returns:
        0 if every request completed, 1 otherwise.

    Raises:
        MissingExtraError: ``rich``, or (without a real endpoint) the simulated provider's
            Starlette or uvicorn, is not installed (the ``demo`` extra has them all), or
            ``trio`` is not, for ``backend="trio"``, or a module of the ``server`` extra is
            not, for ``via_server``.
        SetupError: a real endpoint is configured without an API key, or the simulator
            rejects the fault plan (the message names the field).
    """
    require("rich", "demo", feature=FEATURE)
    if options.backend == "trio":
        # anyio imports trio itself; checked first for a clear message.
        require("trio", None, feature=f"{FEATURE} --backend trio")
    if options.via_server:
        for module in ("starlette", "uvicorn", "hypercorn", "prometheus_client", "httpx_ws"):
            require(module, "server", feature=f"{FEATURE} --via-server")
    from . import _report as report  # rich is only imported from here

    base_url, api_key = resolve_endpoint(options)
    if base_url is not None and api_key is None:
        raise SetupError(
            f"no API key for {base_url}: pass --api-key or set OPENAI_API_KEY "
            "(local servers such as vLLM or Ollama accept any value, e.g. --api-key none)"
        )
    console = report.make_console()
    observer: Observer = Observer() if options.json else report.observer_for(console, options)
    if base_url is not None:
        assert api_key is not None
        endpoint = base_url
        if not options.json:
            report.print_header(console, options, endpoint, None)
        with observer:
            outcome = anyio.run(
                _drive_kw, options, base_url, api_key, observer, backend=options.backend
            )
    else:
        require("starlette", "demo", feature=FEATURE)
        require("uvicorn", "demo", feature=FEATURE)
        from llmpool.testing import FaultPlan, SimulatedProvider

        endpoint = "simulated"
        try:
            plan = FaultPlan.model_validate(dict(options.fault_plan))
        except pydantic.ValidationError as exc:
            raise SetupError(str(exc)) from exc
        if not options.json:
            report.print_header(console, options, endpoint, plan)
        with (
            SimulatedProvider(plan, api_key=SIMULATOR_API_KEY) as sim,
            _hop_simulators(options, plan) as hop_urls,
            observer,
        ):
            outcome = anyio.run(
                _drive_kw,
                options,
                sim.base_url,
                options.api_key or SIMULATOR_API_KEY,
                observer,
                hop_urls,
                backend=options.backend,
            )
            seen = sim.requests
            outcome = replace(
                outcome,
                simulator=SimulatorSummary(
                    requests=len(seen),
                    outcomes=dict(sorted(Counter(r.outcome for r in seen).items())),
                    paths=dict(sorted(Counter(r.path for r in seen).items())),
                ),
                fault_plan=plan.model_dump(mode="json"),
            )
    summary = summarize(options, outcome, endpoint)
    if options.json:
        sys.stdout.write(json.dumps(summary.model_dump(mode="json"), indent=2) + "\n")
    else:
        report.print_report(console, summary)
    return 0 if summary.ok else 1


async def _drive_kw(
    options: DemoOptions,
    base_url: str,
    api_key: str,
    observer: Observer,
    hop_urls: Mapping[str, str] | None = None,
) -> DemoOutcome:
    # anyio.run passes positional arguments only.
    if options.via_server:
        from ._via_server import drive_via_server  # llmpool.server: only with --via-server

        return await drive_via_server(
            options, base_url=base_url, api_key=api_key, observer=observer
        )
    return await drive(
        options, base_url=base_url, api_key=api_key, observer=observer, hop_urls=hop_urls
    )


@contextmanager
def _hop_simulators(options: DemoOptions, plan: FaultPlan) -> Iterator[dict[str, str] | None]:
    """Two more simulated instances for ``terminal-hop`` (separate stores), or ``None``.

    They take the main plan's service time; ``east`` cuts its first stream after two events
    (before any text), so the hop shows a retried stream as well as rebuilt ones.
    """
    if not options.hop or options.via_server:
        yield None
        return
    from llmpool.testing import FaultPlan, ScriptedFault, SimulatedProvider

    east_plan = FaultPlan(
        latency_min=plan.latency_min,
        latency_max=plan.latency_max,
        stream_chunk_delay=min(0.03, plan.latency_max / 10),
        scripted=[ScriptedFault(kind="stream_disconnect", after_events=2)],
    )
    west_plan = east_plan.model_copy(update={"scripted": []})
    east_name, west_name = HOP_INSTANCES
    with (
        SimulatedProvider(east_plan, api_key=SIMULATOR_API_KEY, name=east_name) as east,
        SimulatedProvider(west_plan, api_key=SIMULATOR_API_KEY, name=west_name) as west,
    ):
        yield {east_name: east.base_url, west_name: west.base_url}
