"""``python -m benchmarks``: run the suite, write results JSON, the docs page and the chart.

Modes: ``--smoke`` (seconds; what ``make test`` runs: it checks the suite works and its results
are well formed, never timing), ``--quick`` (one repeat, ~8 min), default full (``make bench``,
~25 min: 5 throughput repeats, 30 overhead alternations; the ``relay``
scenario adds ~4 min to a quick run, more to a full one; ``cluster`` ~4 min to a quick run
(70 s runs) and ~12 min to a full one (120 s runs, LiteLLM's two settings, Redis killed)).
``--scenario NAME`` (repeatable) runs some scenarios only; ``--from-results full.json
ws.json`` renders the page from one run with another run's scenarios added (each then says
where it comes from).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import report
from .clusterproc import LITELLM_VARIANTS, LLMPOOL_VARIANTS
from .runner import SCENARIOS, Settings, run_all

CLUSTER_VARIANTS = LLMPOOL_VARIANTS + LITELLM_VARIANTS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "performance.md"
CHART = ROOT / "docs" / "performance.png"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="seconds; no timing asserted")
    mode.add_argument("--quick", action="store_true", help="one repeat, short storm")
    mode.add_argument(
        "--from-results",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="only re-render docs and chart; scenarios of later files are added to the first's",
    )
    parser.add_argument(
        "--scenario", action="append", choices=SCENARIOS, help="run only this (repeatable)"
    )
    parser.add_argument("--repeats", type=int, help="repeats of each throughput measurement")
    parser.add_argument(
        "--alternations", type=int, help="A/B alternations of the overhead scenario"
    )
    parser.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help="seconds of each measurement window (throughput, storm and priority)",
    )
    parser.add_argument(
        "--cluster-variant",
        action="append",
        choices=CLUSTER_VARIANTS,
        help="the cluster scenario's variants (repeatable; default: the mode's)",
    )
    parser.add_argument(
        "--cluster-seconds", type=float, metavar="S", help="length of each cluster run"
    )
    parser.add_argument("--output", type=Path, help="results JSON (default benchmarks/results/)")
    parser.add_argument(
        "--docs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write docs/performance.md and its chart (default: full runs only)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_results is not None:
        first, *more = args.from_results
        doc = json.loads(first.read_text())
        for extra in more:
            report.merge(doc, json.loads(extra.read_text()), _shown(extra))
        write_docs(doc, first)
        return 0
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    settings = Settings.for_mode(mode)
    overrides: dict[str, Any] = {}
    if args.repeats is not None:
        overrides["repeats"] = args.repeats
    if args.alternations is not None:
        overrides["overhead_alternations"] = args.alternations
    if args.cluster_variant is not None:
        overrides["cluster_variants"] = tuple(args.cluster_variant)
    if args.cluster_seconds is not None:
        overrides["cluster_seconds"] = args.cluster_seconds
    if args.duration is not None:
        overrides.update(
            duration=args.duration, storm_seconds=args.duration, priority_seconds=args.duration
        )
    settings = dataclasses.replace(settings, **overrides)
    scenarios = tuple(args.scenario) if args.scenario else SCENARIOS
    started = time.perf_counter()
    doc = run_all(settings, scenarios)
    problems = report.validate(doc)
    if args.output is not None:
        output = args.output
    elif mode == "smoke":  # the smoke run must not touch the committed results
        output = Path(tempfile.mkdtemp(prefix="llmpool-bench-")) / "smoke.json"
    else:
        suffix = "" if args.scenario is None else "-" + "-".join(scenarios)
        output = RESULTS / f"{mode}{suffix}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"results: {output} ({time.perf_counter() - started:.0f} s)")
    for row in report.evaluate(doc):
        verdict = report.verdict(row).upper() if row["passed"] is False else report.verdict(row)
        print(f"  [{verdict:4s}] {row['scenario']}: {row['measured']} (target {row['target']})")
    if args.docs or (args.docs is None and mode == "full" and args.scenario is None):
        write_docs(doc, output)
    if problems:
        print("malformed results:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    return 0


def write_docs(doc: dict[str, Any], results: Path) -> None:
    """Write ``docs/performance.md`` (and the chart next to it) from ``doc``."""
    drawn = report.chart(doc, CHART)
    DOC.write_text(
        report.markdown(doc, results_path=_shown(results), chart_path=CHART.name if drawn else None)
    )
    print(f"docs: {DOC}" + (f", {CHART}" if drawn else " (no chart: matplotlib missing)"))


def _shown(results: Path) -> str:
    try:
        return results.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return results.name


if __name__ == "__main__":
    sys.exit(main())
