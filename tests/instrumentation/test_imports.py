"""The instruments' extras are imported only by their own modules, and a missing one names
the extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_instrumentation_package_loads_no_extra() -> None:
    """``import llmpool.instrumentation`` loads neither prometheus_client nor opentelemetry."""
    done = run(
        "import sys, llmpool.instrumentation\n"
        "loaded = sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('prometheus_client', 'opentelemetry'))\n"
        "print(loaded)"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("llmpool.instrumentation.prometheus", "prometheus_client", "prometheus"),
        ("llmpool.instrumentation.opentelemetry", "opentelemetry", "otel"),
    ],
    ids=["prometheus", "otel"],
)
def test_missing_extra_is_named(module: str, blocked: str, extra: str) -> None:
    """Without its dependency, importing an instrument's module raises MissingExtraError
    with ``pip install 'llmpool[<extra>]'``."""
    done = run(
        f"import sys; sys.modules[{blocked!r}] = None\n"
        "from llmpool._extras import MissingExtraError\n"
        "try:\n"
        f"    import {module}\n"
        "except MissingExtraError as exc:\n"
        "    print(exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert f"pip install 'llmpool[{extra}]'" in done.stdout
