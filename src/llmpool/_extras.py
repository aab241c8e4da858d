"""Optional dependencies, imported lazily: a missing one fails naming the extra to install.

The core never imports an extra. A feature that needs one (``llmpool.testing``, ``llmpool
demo``, later ``llmpool.server`` and the Prometheus and OpenTelemetry instruments) calls
``require`` when it is used, so the user reads what to install rather than a bare
``ModuleNotFoundError``::

    rich = require("rich", "demo", feature="llmpool demo")
    # MissingExtraError: llmpool demo needs the 'demo' extra: pip install 'llmpool[demo]'
    # (rich is missing)

This module is L0 vocabulary: it imports only the standard library.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message says which extra provides it.

    A subclass of ``ImportError``, so ``except ImportError`` catches it, and its ``name`` is
    the module that could not be imported (as for ``ModuleNotFoundError``).

    Attributes:
        feature: what needed it, e.g. ``"llmpool demo"`` or ``"llmpool.testing"``.
        extra: the llmpool extra that installs it (``"demo"`` for ``llmpool[demo]``), or
            ``None`` for a package that is not one of llmpool's extras.
        module: the module ``feature`` asked for.
        name: the module actually missing (the one asked for, or one it imports).
    """

    def __init__(self, *, feature: str, extra: str | None, module: str, missing: str) -> None:
        self.feature = feature
        self.extra = extra
        self.module = module
        if extra is None:
            message = f"{feature} needs {module}: pip install {module}"
        else:
            message = f"{feature} needs the '{extra}' extra: pip install 'llmpool[{extra}]'"
        if extra is not None or missing != module:
            message += f" ({missing} is missing)"
        super().__init__(message, name=missing)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only context: pickle (a worker process's error) must rebuild from keywords.
        missing = self.module if self.name is None else self.name
        rebuild = functools.partial(
            MissingExtraError,
            feature=self.feature,
            extra=self.extra,
            module=self.module,
            missing=missing,
        )
        return (rebuild, ())


def require(module: str, extra: str | None, *, feature: str) -> ModuleType:
    """Import ``module``, or fail with an error naming the extra that installs it.

    Args:
        module: the module to import, e.g. ``"rich"`` or ``"uvicorn"``.
        extra: the llmpool extra that provides it (``"demo"``, ``"testing"``), or ``None`` for
            a package that is not one of llmpool's extras (the message then says
            ``pip install <module>``).
        feature: what needs it, as the user knows it (``"llmpool demo"``,
            ``"--backend trio"``); the message starts with it.

    Returns:
        The imported module.

    Raises:
        MissingExtraError: ``module``, or a module it imports, cannot be imported. Chained
            from the original ``ImportError``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or module
        raise MissingExtraError(
            feature=feature, extra=extra, module=module, missing=missing
        ) from exc
