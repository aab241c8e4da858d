"""examples/prometheus.py runs as documented and serves its metrics on loopback /metrics:
the test scrapes that URL over real HTTP and parses the exposition with prometheus_client's
text parser. The script runs in a subprocess with the interpreter running the tests, against
the simulated provider it starts itself (no network)."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "prometheus.py"
TIMEOUT = 60.0  # seconds: the script takes about one


def test_prometheus_example_serves_metrics() -> None:
    """Five requests: four complete (the first after one retried 429), one fails with a 400;
    /metrics reports exactly that, and the script exits 0 when stdin closes."""
    with subprocess.Popen(
        [sys.executable, str(EXAMPLE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stdin is not None
            lines = []
            for line in process.stdout:
                lines.append(line)
                if line.startswith("serving "):
                    break
            assert lines, "the script printed nothing"
            url = lines[-1].split()[1]
            assert url.startswith("http://127.0.0.1:")
            assert url.endswith("/metrics")
            with urllib.request.urlopen(url, timeout=10) as answer:
                assert answer.status == 200
                text = answer.read().decode()
            process.stdin.close()
            assert process.wait(TIMEOUT) == 0, process.stderr.read() if process.stderr else ""
        finally:
            if process.poll() is None:
                process.kill()
    assert "request 1: Simulated reply to: question 1" in "".join(lines)
    assert "request 5: failed with 400" in "".join(lines)

    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def total(name: str, **match: str) -> float:
        return sum(
            value
            for (n, labels), value in samples.items()
            if n == name and all((k, v) in labels for k, v in match.items())
        )

    assert total("llmpool_requests_total", outcome="completed", operation="responses") == 4
    assert total("llmpool_requests_total", outcome="failed", operation="responses") == 1
    assert total("llmpool_requests_total", priority="high") == 1
    assert total("llmpool_attempts_total") == 6
    assert total("llmpool_attempts_total", status="429") == 1
    assert total("llmpool_attempts_total", status="400") == 1
    assert total("llmpool_retries_total", reason="status 429") == 1
    assert total("llmpool_retries_total") == 1
    assert total("llmpool_request_duration_seconds_count") == 5
    assert total("llmpool_tokens_total", type="input") > 0
    assert total("llmpool_queued_requests") == 0
    assert total("llmpool_attempts_in_progress") == 0
