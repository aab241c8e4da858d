"""Imports point one way: the core never imports a subpackage; the CLI uses the public API plus
the private seams its docstrings list; the demo's modules import only those below them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "llmpool"
CLI = SRC / "_cli"
# The demo's modules, bottom first, as src/llmpool/_cli/demo/__init__.py lists them.
DEMO_LAYERS = [
    "_options", "_results", "_hop", "_summary", "_drive", "_client", "_via_server", "_report",
    "_run", "_windows", "_instance", "_cluster", "_command",
]  # fmt: skip
# What the CLI may import from llmpool besides its own modules: the public API (instrument
# events included), the defaults, the extras helper, the simulated provider and llmpool.redis
# (--instances).
CLI_MAY_IMPORT = {
    "llmpool",
    "llmpool._constants",
    "llmpool._extras",
    "llmpool.instrumentation",
    "llmpool.redis",
    "llmpool.server",
    "llmpool.testing",
}
PRIVATE_SEAMS: set[tuple[str, str]] = set()
SUBPACKAGES = ("_cli", "instrumentation", "redis", "server", "testing")
SERVER = SRC / "server"
# What llmpool.server may import from llmpool besides its own modules: the public API, the
# Prometheus instrument, the extras helper, and one seam: the environment errors' locator.
SERVER_MAY_IMPORT = {
    "llmpool",
    "llmpool._extras",
    "llmpool._config",
    "llmpool.instrumentation.prometheus",
    "llmpool.redis",
}


def _imports(path: Path) -> list[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    package = ".".join(("llmpool", *path.relative_to(SRC).parent.parts))
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.append(module)
            # ``from . import demo``, ``from llmpool import _constants``: modules too (an
            # absolute import's public names are the public API's).
            names += [
                f"{module}.{a.name}" for a in node.names if node.level or a.name.startswith("_")
            ]
    return names


def _core_modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] not in SUBPACKAGES)


@pytest.mark.parametrize("path", _core_modules(), ids=lambda p: p.relative_to(SRC).as_posix())
def test_the_core_imports_no_subpackage(path: Path) -> None:
    """No core module imports llmpool._cli or llmpool.testing (they import the core)."""
    wrong = [
        name
        for name in _imports(path)
        if name.startswith(tuple(f"llmpool.{sub}" for sub in SUBPACKAGES))
    ]
    assert wrong == []


@pytest.mark.parametrize(
    "path", sorted(CLI.rglob("*.py")), ids=lambda p: p.relative_to(CLI).as_posix()
)
def test_the_cli_uses_the_public_api(path: Path) -> None:
    """The CLI imports llmpool's public names, _constants, _extras, llmpool.testing and its own
    modules; any other private module is a listed seam."""
    where = path.relative_to(CLI).as_posix()
    private = {
        name
        for name in _imports(path)
        if name.startswith("llmpool.")
        and not name.startswith("llmpool._cli")
        and name not in CLI_MAY_IMPORT
    }
    assert private == {seam for place, seam in PRIVATE_SEAMS if place == where}


def test_the_demo_layers_are_the_documented_ones() -> None:
    """The list above is the demo package's: every module is in it, in its docstring's order."""
    modules = sorted(p.stem for p in (CLI / "demo").glob("_*.py") if p.stem != "__init__")
    assert sorted(DEMO_LAYERS) == modules
    doc = ast.get_docstring(ast.parse((CLI / "demo" / "__init__.py").read_text(encoding="utf-8")))
    assert doc is not None
    listed = [line.split()[0] for line in doc.splitlines() if line.startswith("    _")]
    assert listed == DEMO_LAYERS


@pytest.mark.parametrize("module", DEMO_LAYERS)
def test_each_demo_module_imports_only_those_below_it(module: str) -> None:
    """One direction, no cycle: options and results at the bottom, the report near the top,
    the run and the command above it."""
    below = set(DEMO_LAYERS[: DEMO_LAYERS.index(module)])
    demo = "llmpool._cli.demo."
    used = {
        name.removeprefix(demo).split(".")[0]
        for name in _imports(CLI / "demo" / f"{module}.py")
        if name.startswith(demo)
    }
    assert used <= below, f"{module} imports {sorted(used - below)} from above it"


def test_cli_modules_below_the_commands_import_no_command() -> None:
    """_command (the Command type) imports no subcommand; only _main lists them."""
    for name in ("_command.py", "__init__.py", "__main__.py"):
        imported = _imports(CLI / name)
        assert not [n for n in imported if n.startswith("llmpool._cli.demo")], name


@pytest.mark.parametrize(
    "path", sorted(SERVER.rglob("*.py")), ids=lambda p: p.relative_to(SERVER).as_posix()
)
def test_the_server_uses_the_public_api(path: Path) -> None:
    """llmpool.server imports llmpool's public names, the Prometheus instrument, _extras and
    _config (name_variables), and its own modules; never the CLI."""
    used = {
        name
        for name in _imports(path)
        if name.startswith("llmpool.") and not name.startswith("llmpool.server")
    }
    assert used <= SERVER_MAY_IMPORT


# The chat's modules, bottom first, as src/llmpool/_cli/chat/__init__.py lists them.
CHAT_LAYERS = [
    "_escape", "_input", "_options", "_policy", "_render", "_typewriter", "_screen", "_lines",
    "_stats", "_connection", "_app", "_command",
]  # fmt: skip


def test_the_chat_layers_are_the_documented_ones() -> None:
    """The list above is the chat package's: every module, in its docstring's order."""
    modules = sorted(p.stem for p in (CLI / "chat").glob("_*.py") if p.stem != "__init__")
    assert sorted(CHAT_LAYERS) == modules
    doc = ast.get_docstring(ast.parse((CLI / "chat" / "__init__.py").read_text(encoding="utf-8")))
    assert doc is not None
    listed = [line.split()[0] for line in doc.splitlines() if line.startswith("    _")]
    assert listed == CHAT_LAYERS


@pytest.mark.parametrize("module", CHAT_LAYERS)
def test_each_chat_module_imports_only_those_below_it(module: str) -> None:
    """One direction, no cycle: escaping and parsing at the bottom, the app and the command
    at the top."""
    below = set(CHAT_LAYERS[: CHAT_LAYERS.index(module)])
    chat = "llmpool._cli.chat."
    used = {
        name.removeprefix(chat).split(".")[0]
        for name in _imports(CLI / "chat" / f"{module}.py")
        if name.startswith(chat)
    }
    assert used <= below, f"{module} imports {sorted(used - below)} from above it"
