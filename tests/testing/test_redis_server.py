"""``llmpool.testing.RedisServer``: a real redis-server on a free loopback port, that can be
killed and restarted on the same port."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmpool.testing import RedisServer

pytestmark = pytest.mark.integration


def command(port: int, line: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
        conn.sendall(line.encode() + b"\r\n")
        return conn.recv(4096)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as running:
        yield running


def test_it_answers_on_its_url(server: RedisServer) -> None:
    """Started, it answers PING on the loopback port its URL names."""
    assert server.running
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert command(server.port, "PING").startswith(b"+PONG")


def test_kill_then_restart_on_the_same_port_comes_back_empty(server: RedisServer) -> None:
    """kill() is a crash: connections are refused; restart() brings an empty Redis back on
    the same port (nothing is persisted)."""
    port, pid = server.port, server.pid
    assert command(port, "SET k v").startswith(b"+OK")
    server.kill()
    assert not server.running
    assert server.pid is None
    with pytest.raises(ConnectionRefusedError):
        command(port, "PING")
    server.restart()
    assert (server.port, server.running) == (port, True)
    assert server.pid != pid
    assert command(port, "EXISTS k").startswith(b":0")


def test_restart_needs_a_stopped_server(server: RedisServer) -> None:
    with pytest.raises(RuntimeError, match="still running"):
        server.restart()
    with pytest.raises(RuntimeError, match="already running"):
        server.start()


def test_a_port_only_after_start() -> None:
    with pytest.raises(RuntimeError, match="no port before start"):
        RedisServer().url  # noqa: B018  (the property raises)
    with pytest.raises(RuntimeError, match="no port before start"):
        RedisServer().restart()


def test_stop_removes_its_temporary_directory_and_is_idempotent() -> None:
    """Without a directory it works in a temporary one, removed by stop(); stop() twice is
    fine, and kill() of a stopped server is a no-op."""
    server = RedisServer()
    server.start()
    directory = server.directory
    assert directory is not None
    assert (directory / "redis.log").exists()
    server.stop()
    server.stop()
    server.kill()
    assert not directory.exists()
    assert not server.running


def test_a_given_directory_and_arguments_are_used(tmp_path: Path) -> None:
    """Its log goes to the given directory, which stays; extra arguments reach redis-server."""
    with RedisServer(tmp_path, args=("--maxmemory", "12mb")) as server:
        assert b"maxmemory\r\n$8\r\n12582912" in command(server.port, "CONFIG GET maxmemory")
    assert (tmp_path / "redis.log").exists()


def test_missing_redis_server_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-server on PATH, start() says which package to install."""
    monkeypatch.setenv("PATH", "")
    with pytest.raises(RuntimeError, match=r"apt-get install -y redis-server"):
        RedisServer().start()
