"""The ``llmpool`` command line: ``llmpool demo``, ``serve`` and ``chat`` (``docs/cli.md``).

The console script ``llmpool`` is ``llmpool._cli:main``; ``python -m llmpool._cli`` runs it too.
This package only re-exports. Imports point one way:

    _command          Command (a subcommand: name, options, run), exit statuses, errors
    demo/             the ``demo`` subcommand (its own layers: see ``demo/__init__.py``)
    serve/            the ``serve`` subcommand (the chat server, ``llmpool.server``)
    chat/             the ``chat`` subcommand, its terminal client (layers: ``chat/__init__.py``)
    _main             the parser built from ``COMMANDS``, and ``main``

A subcommand uses llmpool's public API (``import llmpool`` names), ``llmpool._constants`` (the
defaults), ``llmpool._extras`` (its extras, imported when it runs) and no other private module,
but for the seams its package docstring lists. The core never imports this package, and
importing it loads no extra.
"""

from ._main import build_parser as build_parser
from ._main import main as main

__all__ = ["build_parser", "main"]
