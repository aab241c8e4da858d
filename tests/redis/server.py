"""A real redis-server for the tests: started on a free loopback port, stopped afterwards.

No persistence (``--save '' --appendonly no``), its working directory a temporary one, bound
to 127.0.0.1 only. Missing redis-server is a failure, not a skip: ``make test`` installs the
Debian package ``redis-server`` as root, and says what to install otherwise.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

STARTUP_TIMEOUT = 10.0  # seconds for redis-server to answer PING (it takes ~10 ms here)
STOP_TIMEOUT = 5.0  # seconds for SIGTERM before SIGKILL
PORT_ATTEMPTS = 5  # a free port may be taken between choosing it and redis binding it


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def inline(port: int, command: str) -> bytes:
    """One command in Redis's inline protocol, without a client library: the first reply
    bytes (up to 4 KiB, enough for PING and CLUSTER INFO)."""
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
        conn.sendall(command.encode() + b"\r\n")
        return conn.recv(4096)


def ping(port: int) -> bool:
    try:
        return inline(port, "PING").startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process; ``url`` while it runs."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.directory = directory
        self.extra = extra
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail(
                "redis-server is not on PATH: llmpool.redis's tests run against a real one. "
                "Install the 'redis-server' package (Debian/Ubuntu: apt-get install "
                "redis-server; `make test` does it when run as root)",
                pytrace=False,
            )
        log = self.directory / "redis.log"
        for _ in range(PORT_ATTEMPTS):
            self.port = free_port()
            command = [
                executable,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
                "--logfile", str(log),
                "--daemonize", "no",
                *self.extra,
            ]  # fmt: skip
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while time.monotonic() < deadline and self.process.poll() is None:
                if ping(self.port):
                    return
                time.sleep(0.01)
            self.stop()
        pytest.fail(
            f"redis-server did not answer PING on 127.0.0.1 after {PORT_ATTEMPTS} tries; "
            f"its log: {log.read_text(errors='replace') if log.exists() else '(none)'}",
            pytrace=False,
        )

    def own_all_slots(self) -> None:
        """Cluster mode: this one node takes all 16384 slots; returns once the cluster is ok."""
        assert inline(self.port, "CLUSTER ADDSLOTSRANGE 0 16383").startswith(b"+OK")
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while b"cluster_state:ok" not in inline(self.port, "CLUSTER INFO"):
            if time.monotonic() > deadline:
                pytest.fail("the one-node cluster did not reach cluster_state:ok", pytrace=False)
            time.sleep(0.01)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
