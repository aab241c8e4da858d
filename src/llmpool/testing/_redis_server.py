"""``RedisServer``: a real redis-server on a free loopback port, for tests and benchmarks.

No persistence (``--save '' --appendonly no``), bound to 127.0.0.1 only, its working
directory a temporary one (or the caller's). ``kill`` and ``restart`` simulate a crash and
the comeback of an empty Redis on the same port, as clients configured with its URL see it.
Talks to the server with Redis's inline protocol over a socket: no client library needed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self

__all__ = ["RedisServer"]

_STARTUP_TIMEOUT: Final = 10.0  # seconds for redis-server to answer PING (it takes ~10 ms)
_STOP_TIMEOUT: Final = 5.0  # seconds for SIGTERM before SIGKILL
_PORT_ATTEMPTS: Final = 5  # a free port may be taken between choosing it and redis binding it
_HOST: Final = "127.0.0.1"
_MISSING: Final = (
    "redis-server is not on PATH: llmpool.testing.RedisServer runs a real one. Install the "
    "'redis-server' package (Debian/Ubuntu: apt-get install -y redis-server; macOS: brew "
    "install redis), or give its path: RedisServer(executable=...)"
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((_HOST, 0))
        return int(probe.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process on a free loopback port: ``url`` while it runs.

    Use it as a context manager, or call ``start`` and ``stop``::

        with RedisServer() as redis:
            async with RedisState(redis.url, prefix="test") as state:
                ...
            redis.kill()  # SIGKILL: clients see connections reset, then refused
            redis.restart()  # the same port, empty (nothing is persisted)

    Args:
        directory: its working directory (its log goes there too); default ``None``: a
            temporary directory, removed by ``stop``.
        args: more command-line arguments for redis-server, e.g.
            ``("--maxmemory", "10mb")``; default none.
        executable: the redis-server to run; default ``None``: ``redis-server`` on ``PATH``.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        args: Sequence[str] = (),
        executable: str | None = None,
    ) -> None:
        self._directory = None if directory is None else Path(directory)
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        self._args = tuple(args)
        self._executable = executable
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        where = "no port yet" if self._port is None else self.url
        return f"RedisServer({where}, {state})"

    # -- addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port; kept by ``kill`` and ``stop`` for ``restart``.

        Raises:
            RuntimeError: before the first ``start``.
        """
        if self._port is None:
            raise RuntimeError("RedisServer has no port before start()")
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``, for ``RedisState(url)`` and other clients.

        Raises:
            RuntimeError: before the first ``start``.
        """
        return f"redis://{_HOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the process is alive (it may have died on its own)."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while started, else ``None``."""
        return None if self._process is None else self._process.pid

    @property
    def directory(self) -> Path | None:
        """Its working directory once started, else the one given (or ``None``)."""
        return self._directory

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start redis-server on a free port and wait until it answers ``PING``.

        Raises:
            RuntimeError: already running; redis-server missing (the message names the
                package to install); it did not answer within 10 seconds on any of 5 ports
                (the message has its log).
        """
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        for _ in range(_PORT_ATTEMPTS):
            if self._launch(_free_port()):
                return
        raise RuntimeError(
            f"redis-server did not answer PING on {_HOST} after {_PORT_ATTEMPTS} tries; "
            f"its log: {self._log_text()}"
        )

    def restart(self) -> None:
        """Start again on the same port after ``kill`` or ``stop``: a Redis that came back.

        It comes back empty: nothing is persisted. Clients holding the URL reconnect to it.

        Raises:
            RuntimeError: never started; still running; redis-server missing; the port was
                taken meanwhile or it did not answer within 10 seconds (with its log).
        """
        port = self.port
        if self.running:
            raise RuntimeError(f"{self!r} is still running; kill() or stop() it first")
        if not self._launch(port):
            raise RuntimeError(
                f"redis-server did not come back on {_HOST}:{port}; its log: {self._log_text()}"
            )

    def kill(self) -> None:
        """SIGKILL the process and reap it: a crash, no shutdown. A no-op when not running."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 5 seconds); idempotent.

        A temporary working directory is removed; the port is kept for ``restart``.
        """
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary, self._directory = None, None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------

    def _workdir(self) -> Path:
        if self._directory is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="llmpool-redis-")
            self._directory = Path(self._temporary.name)
        return self._directory

    def _log_text(self) -> str:
        log = None if self._directory is None else self._directory / "redis.log"
        return log.read_text(errors="replace") if log is not None and log.exists() else "(none)"

    def _launch(self, port: int) -> bool:
        """Run redis-server on ``port``; whether it answered PING in time (else it is gone)."""
        executable = self._executable or shutil.which("redis-server")
        if executable is None:
            raise RuntimeError(_MISSING)
        directory = self._workdir()
        command = [
            executable,
            "--port", str(port),
            "--bind", _HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(directory),
            "--logfile", str(directory / "redis.log"),
            "--daemonize", "no",
            *self._args,
        ]  # fmt: skip
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        self._process, self._port = process, port
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            if _ping(port):
                return True
            time.sleep(0.01)
        self.kill()
        return False
