"""The ``llmpool`` command line: subcommands from a registry, exit statuses, entry points."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from llmpool._cli import _main, build_parser, main
from llmpool._cli._command import Command, SetupError, UsageError
from llmpool._extras import MissingExtraError


def _fake(run: object) -> Command:
    """A subcommand ``fake`` with one option whose run is ``run(args)`` (or raises it)."""

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--times", type=int, default=1)

    def go(args: argparse.Namespace) -> int:
        if isinstance(run, BaseException):
            raise run
        assert isinstance(run, int)
        return run * args.times

    return Command(
        name="fake",
        help="a command for the tests",
        description="Fake description.",
        epilog="fake epilog",
        add_arguments=add_arguments,
        run=go,
    )


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> list[Command]:
    """COMMANDS, replaceable by a test; the demo stays registered."""
    commands = list(_main.COMMANDS)
    monkeypatch.setattr(_main, "COMMANDS", commands)
    return commands


def test_every_registered_command_is_a_subcommand() -> None:
    """The parser has one subcommand per entry of COMMANDS, in order: demo, serve, chat."""
    parser = build_parser()
    (action,) = parser._subparsers._group_actions  # type: ignore[union-attr]
    assert list(action.choices) == [c.name for c in _main.COMMANDS] == ["demo", "serve", "chat"]  # type: ignore[union-attr]


def test_a_registered_command_gets_its_options_and_status(
    registry: list[Command], capsys: pytest.CaptureFixture[str]
) -> None:
    """Adding a Command adds `llmpool NAME` with its options, help and epilog; its run's
    return value is the exit status."""
    registry.append(_fake(3))
    assert main(["fake", "--times", "2"]) == 6
    with pytest.raises(SystemExit):
        main(["--help"])
    listing = capsys.readouterr().out
    assert "fake" in listing
    assert "a command for the tests" in listing
    with pytest.raises(SystemExit):
        main(["fake", "--help"])
    own = capsys.readouterr().out
    assert "Fake description." in own
    assert "--times" in own
    assert "fake epilog" in own


def test_usage_error_shows_the_commands_usage(
    registry: list[Command], capsys: pytest.CaptureFixture[str]
) -> None:
    """UsageError: the subcommand's usage line and the message on stderr, status 2."""
    registry.append(_fake(UsageError("--times and --other do not fit")))
    with pytest.raises(SystemExit) as exc:
        main(["fake"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: llmpool fake ")
    assert "error: --times and --other do not fit" in err


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        pytest.param(SetupError("no API key"), 2, "llmpool fake: no API key", id="setup"),
        pytest.param(
            MissingExtraError(feature="llmpool fake", extra="demo", module="rich", missing="rich"),
            2,
            "llmpool fake needs the 'demo' extra: pip install 'llmpool[demo]' (rich is missing)",
            id="missing-extra",
        ),
        pytest.param(KeyboardInterrupt(), 130, "llmpool fake: interrupted", id="interrupted"),
        pytest.param(
            BaseExceptionGroup("trio's nursery", [KeyboardInterrupt()]),
            130,
            "llmpool fake: interrupted",
            id="interrupted-in-a-group",  # trio delivers Ctrl-C through the task groups
        ),
        pytest.param(
            BaseExceptionGroup("nested", [BaseExceptionGroup("inner", [KeyboardInterrupt()])]),
            130,
            "llmpool fake: interrupted",
            id="interrupted-in-nested-groups",
        ),
    ],
)
def test_errors_become_exit_statuses(
    registry: list[Command],
    capsys: pytest.CaptureFixture[str],
    error: BaseException,
    status: int,
    message: str,
) -> None:
    """A setup error or a missing extra is status 2, Ctrl-C 130; stderr names the command (a
    missing extra's message starts with its feature, the command)."""
    registry.append(_fake(error))
    assert main(["fake"]) == status
    assert capsys.readouterr().err == message + "\n"


def test_other_errors_propagate(registry: list[Command]) -> None:
    """A bug is not turned into an exit status: its traceback shows."""
    registry.append(_fake(RuntimeError("bug")))
    with pytest.raises(RuntimeError, match="bug"):
        main(["fake"])


def test_a_group_with_more_than_ctrl_c_propagates(registry: list[Command]) -> None:
    """Ctrl-C together with a bug in one group: the bug is not hidden behind status 130."""
    registry.append(_fake(BaseExceptionGroup("both", [KeyboardInterrupt(), RuntimeError("bug")])))
    with pytest.raises(BaseExceptionGroup) as raised:
        main(["fake"])
    assert raised.group_contains(RuntimeError, match="bug")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_during_a_demo_exits_130(backend: str) -> None:
    """SIGINT to `llmpool demo` on either backend: status 130 and one line, no traceback."""
    import signal
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "llmpool._cli", "demo", "--backend", backend, "--requests", "50"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3.0)  # imports done, requests under way
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert err.rstrip().endswith("llmpool demo: interrupted")


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    """`llmpool` alone shows the commands and exits 2."""
    assert main([]) == 2
    assert "demo" in capsys.readouterr().err


def test_console_entry_points() -> None:
    """`python -m llmpool._cli demo --help` and the `llmpool` script work; no extra imported."""
    done = subprocess.run(
        [sys.executable, "-m", "llmpool._cli", "demo", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--terminals" in done.stdout
    script = Path(sys.executable).parent / "llmpool"
    if script.exists():
        done = subprocess.run([str(script), "demo", "--help"], capture_output=True, check=False)
        assert done.returncode == 0
    probe = (
        "import sys, llmpool._cli; "
        "print(sorted({'rich', 'starlette', 'uvicorn', 'trio', 'llmpool.testing', "
        "'websockets', 'prompt_toolkit'} "
        "& set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
