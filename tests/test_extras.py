"""Optional dependencies are imported lazily and fail naming the extra to install."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from llmpool._extras import MissingExtraError, require


def test_require_returns_the_module() -> None:
    """An installed module is imported and returned."""
    assert require("json", "demo", feature="llmpool demo") is sys.modules["json"]


def test_missing_module_names_the_extra_and_the_pip_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A missing module: an ImportError that names the feature, the extra, the pip command and
    the module, chained from the original error."""
    monkeypatch.setitem(sys.modules, "rich", None)  # what an uninstalled package looks like
    with pytest.raises(MissingExtraError) as caught:
        require("rich", "demo", feature="llmpool demo")
    error = caught.value
    assert str(error) == (
        "llmpool demo needs the 'demo' extra: pip install 'llmpool[demo]' (rich is missing)"
    )
    assert isinstance(error, ImportError)
    assert (error.feature, error.extra, error.module, error.name) == (
        "llmpool demo",
        "demo",
        "rich",
        "rich",
    )
    assert isinstance(error.__cause__, ImportError)


def test_a_missing_dependency_of_the_module_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the module is there but one it imports is not, the message names the one missing."""
    (tmp_path / "llmpool_probe_half_installed.py").write_text(
        "import llmpool_probe_not_installed\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingExtraError) as caught:
        require("llmpool_probe_half_installed", "testing", feature="llmpool.testing")
    assert str(caught.value).endswith(
        "pip install 'llmpool[testing]' (llmpool_probe_not_installed is missing)"
    )
    assert caught.value.name == "llmpool_probe_not_installed"
    assert caught.value.module == "llmpool_probe_half_installed"


def test_a_package_that_is_no_extra_is_named_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """extra=None: the message says to install the package itself."""
    monkeypatch.setitem(sys.modules, "trio", None)
    with pytest.raises(MissingExtraError, match=r"^--backend trio needs trio: pip install trio$"):
        require("trio", None, feature="--backend trio")


def test_the_error_survives_pickling() -> None:
    """A worker process's MissingExtraError reaches the parent whole (message and context)."""
    error = MissingExtraError(feature="llmpool demo", extra="demo", module="rich", missing="rich")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is MissingExtraError
    assert str(copy) == str(error)
    assert (copy.feature, copy.extra, copy.module, copy.name) == (
        "llmpool demo",
        "demo",
        "rich",
        "rich",
    )


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )


def test_import_llmpool_loads_no_extra_and_no_subpackage() -> None:
    """import llmpool imports none of the extras (rich, starlette, uvicorn, hypercorn, trio,
    prometheus_client, websockets, coredis) and none of its own subpackages: the core never
    imports one."""
    probe = (
        "import sys, llmpool; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'rich', 'starlette', 'uvicorn', 'hypercorn', 'trio', 'prometheus_client', "
        "'websockets', 'coredis', 'hiredis'} "
        "or m.startswith(('llmpool.testing', 'llmpool._cli', 'llmpool.server', 'llmpool.redis'))))"
    )
    done = _run(probe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_llmpool_testing_without_its_extra_names_it() -> None:
    """import llmpool.testing without starlette fails with the testing extra's pip command."""
    done = _run("import sys; sys.modules['starlette'] = None; import llmpool.testing")
    assert done.returncode == 1
    assert done.stderr.rstrip().endswith(
        "llmpool._extras.MissingExtraError: llmpool.testing needs the 'testing' extra: "
        "pip install 'llmpool[testing]' (starlette is missing)"
    )


def test_llmpool_server_without_its_extra_names_it() -> None:
    """import llmpool.server without hypercorn fails with the server extra's pip command."""
    done = _run("import sys; sys.modules['hypercorn'] = None; import llmpool.server")
    assert done.returncode == 1
    assert done.stderr.rstrip().endswith(
        "llmpool._extras.MissingExtraError: llmpool.server needs the 'server' extra: "
        "pip install 'llmpool[server]' (hypercorn is missing)"
    )


def test_llmpool_redis_without_its_extra_names_it() -> None:
    """import llmpool.redis without coredis fails with the redis extra's pip command."""
    done = _run("import sys; sys.modules['coredis'] = None; import llmpool.redis")
    assert done.returncode == 1
    assert done.stderr.rstrip().endswith(
        "llmpool._extras.MissingExtraError: llmpool.redis needs the 'redis' extra: "
        "pip install 'llmpool[redis]' (coredis is missing)"
    )


def test_llmpool_redis_without_hiredis_names_the_extra() -> None:
    """import llmpool.redis without hiredis (the budget worker's RESP codec) fails with the
    redis extra's pip command too."""
    done = _run("import sys; sys.modules['hiredis'] = None; import llmpool.redis")
    assert done.returncode == 1
    assert done.stderr.rstrip().endswith(
        "llmpool._extras.MissingExtraError: llmpool.redis needs the 'redis' extra: "
        "pip install 'llmpool[redis]' (hiredis is missing)"
    )
