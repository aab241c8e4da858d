"""`llmpool serve`: settings from options and variables, and a real run in a subprocess
(the simulated provider, a WebSocket turn, SIGTERM drains and exits 0)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time

import anyio
import httpx
import pytest
from httpx_ws import WebSocketDisconnect, aconnect_ws

from llmpool._cli._command import SetupError
from llmpool._cli._main import build_parser, main
from llmpool._cli.serve import _command as serve


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


def test_options_win_over_variables() -> None:
    """--port beats LLMPOOL_SERVER_PORT; unset options keep the variables."""
    env = {"LLMPOOL_SERVER_PORT": "9000", "LLMPOOL_SERVER_MAX_CONNECTIONS": "40"}
    config = serve.settings_from(_args("--port", "9001", "--model", "m"), env)
    assert (config.port, config.max_connections, config.model) == (9001, 40, "m")
    assert config.base_url is None


def test_redis_comes_from_the_option_or_the_variable() -> None:
    """--redis wins over LLMPOOL_REDIS_URL, which is used when the option is absent."""
    env = {"LLMPOOL_REDIS_URL": "redis://127.0.0.1:1/0"}
    assert serve.settings_from(_args(), env).redis_url == "redis://127.0.0.1:1/0"
    config = serve.settings_from(_args("--redis", "redis://127.0.0.1:2/1"), env)
    assert config.redis_url == "redis://127.0.0.1:2/1"


def test_openai_variables_give_the_endpoint() -> None:
    """OPENAI_BASE_URL and OPENAI_API_KEY are used when llmpool's are not set."""
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:1/v1", "OPENAI_API_KEY": "sk-abc"}
    config = serve.settings_from(_args(), env)
    assert config.base_url == "http://127.0.0.1:1/v1"
    assert config.api_key is not None
    assert config.api_key.get_secret_value() == "sk-abc"


def test_an_endpoint_without_a_key_is_a_setup_error() -> None:
    with pytest.raises(SetupError, match="no API key for http://x/v1"):
        serve.settings_from(_args("--base-url", "http://x/v1"), {})


def test_an_invalid_variable_is_refused_at_start_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 with the variable's name and the bad value, before anything is served."""
    monkeypatch.setenv("LLMPOOL_SERVER_MAX_CONNECTIONS", "none")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "invalid setting LLMPOOL_SERVER_MAX_CONNECTIONS" in err
    assert "'none'" in err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_serve_answers_a_turn_and_drains_on_sigterm(backend: str) -> None:
    """A fresh `llmpool serve` (no endpoint: the simulated provider) answers /health and a
    WebSocket turn; SIGTERM closes the open socket with 1012 and the process exits 0."""
    port = _free_port()
    env = {**os.environ, "LLMPOOL_SERVER_CLOSE_TIMEOUT": "0.5"}
    env.pop("OPENAI_BASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmpool._cli", "serve", "--port", str(port), "--backend", backend],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        frames, code = anyio.run(_talk, port, proc)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert frames[-1]["type"] == "complete"
    assert "".join(f["content"] for f in frames if f["type"] == "chunk").endswith("hi there")
    assert code == 1012
    assert "listening" in err


async def _talk(port: int, proc: subprocess.Popen[str]) -> tuple[list[dict[str, object]], int]:
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        deadline = time.monotonic() + 20
        while True:
            try:
                if (await http.get("/health")).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                await anyio.sleep(0.1)
        async with aconnect_ws(
            f"{base}/ws/chat/cli", http, keepalive_ping_interval_seconds=None
        ) as ws:
            await ws.send_text(json.dumps({"message": "hi there"}))
            frames = []
            while not frames or frames[-1]["type"] not in ("complete", "error"):
                frames.append(json.loads(await ws.receive_text(timeout=10)))
            proc.send_signal(signal.SIGTERM)
            try:
                while True:
                    await ws.receive_text(timeout=10)
            except WebSocketDisconnect as exc:
                return frames, exc.code
