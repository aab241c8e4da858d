"""``llmpool demo``: many terminals sharing one ``ConnectionManager``, shown live.

N terminals (sessions ``terminal-1`` …) each send M requests in turn, with staggered starts and
mixed priorities, all through one ``ConnectionManager``; ``terminal-hop`` streams a
conversation that hops between two more instances. With ``--via-server`` each terminal is a
WebSocket client of an in-process ``llmpool.server`` in front of that manager instead. With
``--instances N``, N worker processes, each with its own manager, share one quota through
``llmpool.redis``. See ``docs/demo.md`` and ``docs/cli.md``.

This package only re-exports. Imports point one way (each module imports only those above
it); nothing here imports ``rich`` or the simulated provider until ``_run`` runs the demo:

    _options     DemoOptions, the defaults, the terminals' names and priorities
    _results     RequestResult, HopTurn, SimulatorSummary, DemoOutcome; the Observer
    _hop         terminal-hop: the streamed conversation over two instances
    _summary     the typed summary (DemoSummary, what --json prints) and summarize()
    _drive       the terminals through one ConnectionManager; LiveStates (an instrument)
    _client      --via-server: a terminal's chat socket, turns in sequence, reconnect, resume
    _via_server  --via-server: the server in front of the manager, its terminals, its metrics
    _report      rich: live progress, the table, the report (from a DemoSummary)
    _run         run_demo(): extras, endpoint, simulators, output
    _windows     --instances: per-instance reports, sliding windows, the in-flight peak
    _instance    --instances: one worker process, its manager on the shared Redis
    _cluster     --instances: Redis, the provider, the workers, the report
    _command     the subcommand: its options -> DemoOptions -> run_demo()

The live display follows the running requests through an instrument (``_drive.LiveStates``,
public ``llmpool.instrumentation`` events); the demo's only private imports are
``llmpool._constants`` (the defaults) and ``llmpool._extras``, and, with ``--via-server``,
``llmpool chat``'s ``ReconnectPolicy`` (``llmpool._cli.chat._policy``); ``--instances`` uses
``llmpool.redis`` (public) in its workers.
"""

from ._command import COMMAND as COMMAND

__all__ = ["COMMAND"]
