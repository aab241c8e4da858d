"""A real ``llmpool serve`` in a subprocess, and ``llmpool chat`` in a pseudo-terminal whose
screen is emulated (pyte), so tests read what a user would see."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import httpx
import pexpect
import pyte

ROWS, COLS = 200, 100  # tall enough that nothing scrolls away during a test


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OPENAI_BASE_URL", "LLMPOOL_SERVER_TOKEN", "http_proxy", "https_proxy"):
        env.pop(name, None)
        env.pop(name.upper(), None)
    return {**env, **extra}


class Server:
    """``llmpool serve`` on ``port`` (the simulated provider: 40 ms a word), until stopped."""

    def __init__(self, port: int, **env: str) -> None:
        self.port = port
        variables = {"LLMPOOL_SERVER_CLOSE_TIMEOUT": "0.5", **env}
        self.log = tempfile.TemporaryFile()  # noqa: SIM115  # closed by stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmpool._cli", "serve", "--port", str(port)],
            env=_env(**variables),
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("llmpool serve did not start")
            time.sleep(0.05)

    def terminate(self) -> int:
        """SIGTERM (drain), and wait for the process to exit; its status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


class Terminal:
    """``llmpool chat ARGS`` in a pty; ``screen()`` is the emulated screen's text."""

    def __init__(self, *args: str) -> None:
        self.vt = pyte.Screen(COLS, ROWS)
        self.stream = pyte.ByteStream(self.vt)
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "llmpool._cli", "chat", *args],
            env=_env(TERM="xterm", NO_COLOR="1"),
            dimensions=(ROWS, COLS),
        )
        # prompt_toolkit asks where the cursor is (CPR); the emulator answers like a terminal.
        self.vt.write_process_input = lambda data: self.child.send(data.encode())  # type: ignore[method-assign]

    def _pump(self, wait: float) -> None:
        try:
            data = self.child.read_nonblocking(65536, timeout=wait)
        except pexpect.TIMEOUT:
            return
        except pexpect.EOF:
            time.sleep(wait)
            return
        self.stream.feed(data)

    def screen(self) -> str:
        return "\n".join(line.rstrip() for line in self.vt.display).rstrip()

    def wait_for(self, check: str | Callable[[str], bool], within: float = 10.0) -> str:
        """Read until ``check`` holds on the screen: a substring (found across wrapped
        lines too), or a predicate of the screen's text."""
        test = (
            (lambda s: check in s or check in s.replace("\n", ""))
            if isinstance(check, str)
            else check
        )
        deadline = time.monotonic() + within
        while True:
            self._pump(0.05)
            text = self.screen()
            if test(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {check!r}; the screen:\n{text}")

    def type(self, line: str) -> None:
        self.child.send(line + "\r")

    def key(self, key: str) -> None:
        self.child.send(key)

    def exit_status(self, within: float = 10.0) -> int:
        deadline = time.monotonic() + within
        while self.child.isalive():
            self._pump(0.05)
            if time.monotonic() > deadline:
                raise AssertionError(f"the chat did not exit; the screen:\n{self.screen()}")
        self.child.close()
        status = self.child.exitstatus
        assert status is not None, self.child.signalstatus
        return int(status)

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
