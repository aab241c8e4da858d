"""``llmpool demo``: many terminals run through one ConnectionManager.

Tests that call ``main()`` are plain sync tests: ``main`` calls ``anyio.run`` itself. They run
against the simulated provider with a fast fault plan (latency 0-10 ms, no random faults unless
a test scripts some), so each takes well under a second or two.
"""

from __future__ import annotations

import http.server
import json
import sys
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import openai
import pytest

from llmpool import ConnectionManager, PoolConfig, Priority, RetryPolicy
from llmpool._cli import main
from llmpool._cli.demo._drive import LiveStates
from llmpool._cli.demo._options import DEFAULT_SEED, terminal_priority
from llmpool._cli.demo._results import UNEXPECTED_RESPONSE
from llmpool.testing import SimulatedProvider
from tests.helpers import client_factory, status_error
from tests.test_manager import Gate

FAST = ["--stagger", "0", "--no-faults", "--latency-min", "0", "--latency-max", "0.01"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No real endpoint leaks in, and rich sees a plain pipe."""
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["demo", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_every_request_is_accounted_for(capsys: pytest.CaptureFixture[str]) -> None:
    """3 terminals x 2 requests: 6 succeed, 2 per terminal, all seen by the simulator."""
    code, summary = run_json(capsys, "--terminals", "3", "--requests", "2", *FAST)
    assert code == 0
    assert summary["ok"] is True
    totals = summary["totals"]
    assert (totals["expected"], totals["requests"], totals["succeeded"]) == (6, 6, 6)
    assert totals["failed"] == 0
    assert summary["failures"] == []
    assert list(summary["per_terminal"]) == ["terminal-1", "terminal-2", "terminal-3"]
    for group in summary["per_terminal"].values():
        assert (group["requests"], group["succeeded"], group["failed"]) == (2, 2, 0)
        assert group["latency"]["p50"] is not None
    assert summary["simulator"]["requests"] >= 6
    assert summary["simulator"]["paths"] == {"/v1/responses": 6}
    assert summary["stats"]["completedRequests"] == 6
    assert summary["stats"]["failedRequests"] == 0


def test_no_hop_skips_the_hopping_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    """--no-hop runs only the terminals: no hop summary, only their requests."""
    code, summary = run_json(capsys, "--terminals", "1", "--requests", "1", "--no-hop", *FAST)
    assert code == 0
    assert summary["hop"] is None
    assert summary["simulator"]["requests"] == 1


def test_default_plan_teaches_the_rate_limit(capsys: pytest.CaptureFixture[str]) -> None:
    """The default simulator sends x-ratelimit-* headers; the manager learns 600 RPM."""
    code, summary = run_json(capsys, "--terminals", "1", "--requests", "1")
    assert code == 0
    (budget,) = summary["stats"]["rateLimits"]
    assert budget["requestsPerMinute"] == 600


def test_priorities_cycle_and_are_summarised(capsys: pytest.CaptureFixture[str]) -> None:
    """Terminals get high, normal, low in turn; per_priority sums them."""
    _, summary = run_json(capsys, "--terminals", "4", "--requests", "1", *FAST)
    priorities = [g["priority"] for g in summary["per_terminal"].values()]
    assert priorities == ["high", "normal", "low", "high"]
    per_priority = summary["per_priority"]
    assert {p: g["succeeded"] for p, g in per_priority.items()} == {
        "high": 2,
        "normal": 1,
        "low": 1,
    }


def test_forced_priority(capsys: pytest.CaptureFixture[str]) -> None:
    """--priority gives every terminal the same priority."""
    _, summary = run_json(capsys, "--terminals", "3", "--requests", "1", "--priority", "low", *FAST)
    assert list(summary["per_priority"]) == ["low"]
    assert summary["config"]["priority"] == "low"


def test_retries_counted_from_the_records_match_the_manager(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A scripted 503 and 429 cost exactly two retries; the demo's count equals stats()."""
    plan = {
        "scripted": [
            {"kind": "status", "status": 503, "retry_after": 0.05},
            {"kind": "rate_limit", "retry_after": 0.05},
        ]
    }
    code, summary = run_json(
        capsys, "--terminals", "2", "--requests", "2", *FAST, "--fault-plan", json.dumps(plan)
    )
    assert code == 0
    totals = summary["totals"]
    assert totals["retries"] == 2 == summary["stats"]["retries"]
    assert totals["attempts"] == 6 == summary["simulator"]["requests"]
    assert summary["simulator"]["outcomes"] == {"ok": 4, "rate_limit": 1, "status:503": 1}


def test_wrong_key_fails_every_request_without_retry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """401 is not retried: exit 1, every request listed with AuthenticationError."""
    code, summary = run_json(
        capsys, "--terminals", "3", "--requests", "2", "--api-key", "wrong", *FAST
    )
    assert code == 1
    assert summary["ok"] is False
    assert summary["totals"]["failed"] == 6
    assert len(summary["failures"]) == 6
    assert {f["error"] for f in summary["failures"]} == {"AuthenticationError"}
    assert {f["attempts"] for f in summary["failures"]} == {1}
    assert summary["simulator"]["outcomes"] == {"unauthorized": 6}


def test_retries_run_out(capsys: pytest.CaptureFixture[str]) -> None:
    """Always 503 with --max-attempts 2: each request fails after exactly 2 attempts."""
    plan = '{"error_rates": {"503": 1.0}, "retry_after": null}'
    code, summary = run_json(
        capsys,
        "--terminals",
        "1",
        "--requests",
        "1",
        "--max-attempts",
        "2",
        *FAST,
        "--fault-plan",
        plan,
    )
    assert code == 1
    [failure] = summary["failures"]
    assert (failure["error"], failure["attempts"]) == ("InternalServerError", 2)


def test_chat_api(capsys: pytest.CaptureFixture[str]) -> None:
    """--api chat sends chat.completions requests."""
    code, summary = run_json(capsys, "--terminals", "2", "--requests", "1", "--api", "chat", *FAST)
    assert code == 0
    assert summary["simulator"]["paths"] == {"/v1/chat/completions": 2}


def test_trio_backend(capsys: pytest.CaptureFixture[str]) -> None:
    """--backend trio runs the same demo on trio."""
    code, summary = run_json(
        capsys, "--terminals", "2", "--requests", "1", "--backend", "trio", *FAST
    )
    assert code == 0
    assert summary["config"]["backend"] == "trio"


@pytest.mark.parametrize("via", ["option", "environment"])
def test_real_endpoint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    """With a base URL no simulator is started; requests carry the terminals' session ids."""
    with SimulatedProvider(api_key="sk-real") as upstream:
        if via == "option":
            args = ["--base-url", upstream.base_url, "--api-key", "sk-real"]
        else:
            monkeypatch.setenv("OPENAI_BASE_URL", upstream.base_url)
            monkeypatch.setenv("OPENAI_API_KEY", "sk-real")
            args = []
        code, summary = run_json(
            capsys, "--terminals", "3", "--requests", "1", "--stagger", "0", *args
        )
        seen = upstream.requests
    assert code == 0
    assert summary["config"]["endpoint"] == upstream.base_url
    assert summary["simulator"] is None
    assert summary["config"]["fault_plan"] is None
    assert len(seen) == 3
    assert {r.headers["x-session-id"] for r in seen} == {"terminal-1", "terminal-2", "terminal-3"}


def test_real_endpoint_needs_a_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A base URL without any API key is a setup error (exit 2) that says what to do."""
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert main(["demo"]) == 2
    assert "--api-key" in capsys.readouterr().err


def test_rich_report_when_piped(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json: plain progress lines, the table, the stats JSON; no control codes."""
    code = main(["demo", "--terminals", "2", "--requests", "2", *FAST])
    out = capsys.readouterr().out
    assert code == 0
    assert "\x1b[" not in out
    assert "terminal-1 [high] request 2/2 ok" in out
    assert "4/4 requests completed" in out
    assert '"completedRequests": 4' in out
    assert out.rstrip().endswith("All 4 requests completed.")


def test_rich_report_lists_failures(capsys: pytest.CaptureFixture[str]) -> None:
    """Failures are listed with their error type, and the verdict says how many."""
    code = main(["demo", "--terminals", "1", "--requests", "1", "--api-key", "bad", *FAST])
    out = capsys.readouterr().out
    assert code == 1
    assert "Failures (1):" in out
    assert "AuthenticationError" in out
    assert "1 of 1 requests did not complete." in out


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    """`llmpool demo --help` names every option and its default."""
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--terminals", "--requests", "--stagger", "--priority", "--api", "--model",
        "--backend", "--via-server", "--json", "--base-url", "--api-key", "--pool-size",
        "--max-concurrency", "--queue-timeout", "--request-timeout", "--max-attempts", "--seed",
        "--latency-min", "--latency-max", "--no-faults", "--no-hop", "--fault-plan",
    ):  # fmt: skip
        assert option in out
    assert "(default: 5)" in out
    assert f"(default: {DEFAULT_SEED})" in out
    assert "(default: gpt-4o-mini)" in out


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--terminals", "0"], id="no-terminals"),
        pytest.param(["--stagger", "-1"], id="negative-stagger"),
        pytest.param(["--queue-timeout", "0"], id="pool-config-invalid"),
        pytest.param(["--fault-plan", "[1]"], id="fault-plan-not-object"),
        pytest.param(["--fault-plan", "@/nonexistent/plan.json"], id="fault-plan-no-file"),
    ],
)
def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    """Misuse fails at once with status 2 and a message."""
    with pytest.raises(SystemExit) as exc:
        main(["demo", *args])
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_invalid_fault_plan_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A fault plan the simulator rejects is a setup error naming the field."""
    assert main(["demo", "--fault-plan", '{"drop_rate": 2}']) == 2
    assert "drop_rate" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        pytest.param(
            module,
            [],
            f"llmpool demo needs the 'demo' extra: pip install 'llmpool[demo]' "
            f"({module} is missing)",
            id=module,
        )
        for module in ("rich", "starlette", "uvicorn")
    ]
    + [
        pytest.param(
            "trio",
            ["--backend", "trio"],
            "llmpool demo --backend trio needs trio: pip install trio",
            id="trio",
        )
    ],
)
def test_a_missing_extra_is_named(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    module: str,
    args: list[str],
    message: str,
) -> None:
    """Without rich or the simulator's Starlette and uvicorn the demo names its extra (which
    has them all); without trio, --backend trio says to install it. Exit 2, before any run."""
    monkeypatch.setitem(sys.modules, module, None)  # what an uninstalled package looks like
    assert main(["demo", *args, *FAST]) == 2
    captured = capsys.readouterr()
    assert captured.err == message + "\n"
    assert captured.out == ""


# -- pieces ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "forced", "expected"),
    [
        (1, None, Priority.HIGH),
        (2, None, Priority.NORMAL),
        (3, None, Priority.LOW),
        (4, None, Priority.HIGH),
        (2, Priority.LOW, Priority.LOW),
    ],
    ids=["1-high", "2-normal", "3-low", "4-wraps", "forced"],
)
def test_terminal_priority(number: int, forced: Priority | None, expected: Priority) -> None:
    """Terminal n gets high, normal, low in turn unless a priority is forced."""
    assert terminal_priority(number, forced) is expected


@pytest.mark.anyio
async def test_live_states_tell_what_each_terminal_waits_for() -> None:
    """The live display's states: a running attempt, a request queued behind it, one backing
    off after a 503, one waiting out the cooldown its 429 started; other sessions ignored."""
    gate = Gate()

    def failing(error: Exception) -> Any:
        async def fn(client: openai.AsyncOpenAI) -> None:
            raise error

        return fn

    retry = RetryPolicy(initial_backoff=30.0, jitter=0.0)
    config = PoolConfig(pool_size=2, max_concurrency=2, retry=retry)
    factory = client_factory("http://a.test/v1", "http://b.test/v1")
    sessions = ["terminal-1", "terminal-2", "terminal-3", "terminal-4"]
    live = LiveStates()
    async with (
        ConnectionManager(config, client_factory=factory, instruments=[live]) as m,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(lambda: m.run(failing(status_error(503)), session_id="terminal-3"))
        await anyio.wait_all_tasks_blocked()
        rate_limited = status_error(429, headers={"retry-after": "30"})
        tg.start_soon(lambda: m.run(failing(rate_limited), session_id="terminal-4"))
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(lambda: m.run(gate.fn("a"), session_id="terminal-1"))
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(lambda: m.run(gate.fn("b"), session_id="elsewhere"))
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(lambda: m.run(gate.fn("c"), session_id="terminal-2"))
        await anyio.wait_all_tasks_blocked()
        assert live.states(sessions) == {
            "terminal-1": "attempt 1",
            "terminal-2": "queued",
            "terminal-3": "backing off",
            "terminal-4": "upstream cooling",
        }
        tg.cancel_scope.cancel()
    assert live.states(sessions) == {}  # every request ended (cancelled)


def test_hop_terminal_conversation_hops_and_recovers(capsys: pytest.CaptureFixture[str]) -> None:
    """terminal-hop streams a conversation east -> west -> east: east's first stream is cut
    before any text and retried; each hop is rebuilt from the transcript after the other
    instance's 404; every reply is streamed once, whole."""
    code, summary = run_json(capsys, "--terminals", "1", "--requests", "1", *FAST)
    assert code == 0
    hop = summary["hop"]
    assert hop["ok"] is True
    turns = hop["turns"]
    assert [(t["turn"], t["instance"]) for t in turns] == [
        (1, "east"),
        (1, "east"),
        (2, "west"),
        (3, "east"),
    ]
    assert [t["recovered"] for t in turns] == ["retried", None, "rebuilt", "rebuilt"]
    assert (hop["recoveries"], hop["retries"], hop["requests"]) == (2, 1, 4)
    assert turns[0]["tool_calls"] == ["get_weather"]
    assert turns[0]["text"] == ""
    assert turns[1]["text"].startswith("Simulated reply to tool output: ")
    assert turns[2]["text"] == "Simulated reply to: And in Lyon tomorrow?"
    assert turns[3]["text"] == "Simulated reply to: Thanks. Summarise the forecast in one line."
    assert "not found" in turns[2]["reason"]
    assert not any(t["duplicated"] for t in turns)
    assert [t["attempts"] for t in turns] == [2, 1, 2, 2]
    # The hop instances are separate: the main simulator saw only the terminals' request.
    assert summary["simulator"]["requests"] == 1


def test_rich_report_shows_the_hop(capsys: pytest.CaptureFixture[str]) -> None:
    """The report prints terminal-hop's path, its recoveries and each reply."""
    assert main(["demo", "--terminals", "1", "--requests", "1", *FAST]) == 0
    out = capsys.readouterr().out
    assert "terminal-hop: streamed conversation east -> west -> east; 2 rebuilt, 1 retried" in out
    assert "turn 2 on west [rebuilt: " in out
    assert "'Simulated reply to: And in Lyon tomorrow?'" in out


@pytest.fixture
def sse_text_server() -> Iterator[str]:
    """A server that answers every POST with SSE text, as if the call had been streamed."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            body = b'data: {"type": "response.created"}\n\ndata: [DONE]\n\n'
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("api", "expected"), [("responses", "Response"), ("chat", "ChatCompletion")]
)
def test_an_answer_of_the_wrong_type_is_a_failure(
    capsys: pytest.CaptureFixture[str], sse_text_server: str, api: str, expected: str
) -> None:
    """SSE text to a non-streamed call makes the SDK return a str: not "ok" but a failure
    that says what was expected and what came back; exit status 1."""
    code, summary = run_json(
        capsys,
        *("--terminals", "1", "--requests", "2", "--stagger", "0", "--api", api),
        *("--base-url", sse_text_server, "--api-key", "none"),
    )
    assert code == 1
    assert summary["ok"] is False
    assert (summary["totals"]["succeeded"], summary["totals"]["failed"]) == (0, 2)
    failures = summary["failures"]
    assert [f["error"] for f in failures] == [UNEXPECTED_RESPONSE] * 2
    assert all(f["message"].startswith(f"expected a {expected}, got str: ") for f in failures)
    assert all(f["request_id"].startswith("req_") for f in failures)
    assert summary["stats"]["completedRequests"] == 2  # the manager saw answers
