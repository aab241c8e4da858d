"""``/stats``: the server's ``/metrics.json`` and ``/api/connection-stats`` as rich tables.

``fetch_stats`` does the two GETs (the token goes in an ``Authorization`` header, as the
server's ``/api/*`` routes need it); ``stats_table`` is pure, and renders nested objects as
dotted keys (``queueWait.p95``) and lists as compact JSON.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from ._escape import escape_controls

__all__ = ["StatsError", "fetch_stats", "stats_table"]


class StatsError(Exception):
    """The stats could not be fetched; the message says why, in one line."""


def _rows(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _rows(value, f"{name}.")
        elif isinstance(value, list):
            yield name, json.dumps(value, separators=(",", ":"))[:200]
        elif isinstance(value, float):
            yield name, f"{value:.4g}"
        else:
            yield name, str(value)


async def fetch_stats(
    base: str,
    token: str | None,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109  # httpx's own per-request timeout, not a deadline
) -> tuple[dict[str, Any], dict[str, Any]]:
    """GET ``/metrics.json`` and ``/api/connection-stats`` from the server at ``base``.

    Args:
        base: the server's HTTP base, e.g. ``http://127.0.0.1:8000``.
        token: the bearer token, if the server needs one.
        timeout: seconds for each request; default 5.

    Returns:
        The two JSON objects.

    Raises:
        StatsError: a request failed, was refused or did not answer a JSON object.
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    found: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=timeout) as http:
        for path in ("/metrics.json", "/api/connection-stats"):
            try:
                response = await http.get(path)
            except httpx.HTTPError as exc:
                raise StatsError(f"GET {base}{path}: {exc or type(exc).__name__}") from exc
            if response.status_code == 401:
                raise StatsError(f"GET {path}: 401: the server needs its token (--token)")
            if response.status_code != 200:
                raise StatsError(f"GET {path}: HTTP {response.status_code}")
            try:
                body = response.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise StatsError(f"GET {path}: the answer is not a JSON object")
            found.append(body)
    return found[0], found[1]


def stats_table(
    metrics: Mapping[str, Any], stats: Mapping[str, Any], *, width: int, color: bool
) -> str:
    """The two answers as one rich table, rendered to text (ANSI colours when ``color``).

    Values come from the server: they are shown as escaped text, never as rich markup.
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="llmpool server stats", title_justify="left", expand=False)
    table.add_column("metric")
    table.add_column("value", justify="right", overflow="fold")
    for source, data in (("/metrics.json", metrics), ("/api/connection-stats", stats)):
        table.add_row(Text(source, style="bold"), "")
        for name, value in _rows(data):
            table.add_row(Text(f"  {escape_controls(name)}"), Text(escape_controls(value)))
        table.add_section()
    out = io.StringIO()
    console = Console(
        file=out,
        width=width,
        force_terminal=color,
        no_color=not color,
        color_system="standard" if color else None,
        highlight=False,
    )
    console.print(table)
    return out.getvalue().rstrip("\n")
