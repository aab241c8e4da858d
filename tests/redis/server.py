"""The tests' redis-server: ``llmpool.testing.RedisServer``, failing the test run (not skipping
it) when redis-server is missing. ``make test`` installs the Debian package ``redis-server`` as
root, and says what to install otherwise.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from llmpool import testing

STARTUP_TIMEOUT = 10.0  # seconds for the one-node cluster to reach cluster_state:ok


def inline(port: int, command: str) -> bytes:
    """One command in Redis's inline protocol, without a client library: the first reply
    bytes (up to 4 KiB, enough for PING and CLUSTER INFO)."""
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
        conn.sendall(command.encode() + b"\r\n")
        return conn.recv(4096)


class RedisServer(testing.RedisServer):
    """``llmpool.testing.RedisServer`` in ``directory``, with ``extra`` arguments."""

    def __init__(self, directory: Path, *extra: str) -> None:
        super().__init__(directory, args=extra)

    def start(self) -> None:
        try:
            super().start()
        except RuntimeError as exc:
            pytest.fail(f"{exc} (`make test` installs it when run as root)", pytrace=False)

    def own_all_slots(self) -> None:
        """Cluster mode: this one node takes all 16384 slots; returns once the cluster is ok."""
        assert inline(self.port, "CLUSTER ADDSLOTSRANGE 0 16383").startswith(b"+OK")
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while b"cluster_state:ok" not in inline(self.port, "CLUSTER INFO"):
            if time.monotonic() > deadline:
                pytest.fail("the one-node cluster did not reach cluster_state:ok", pytrace=False)
            time.sleep(0.01)
