"""``llmpool.redis``'s defaults, once (the core's live in ``llmpool._constants``)."""

from __future__ import annotations

from typing import Final

DEFAULT_PREFIX: Final = "llmpool"
"""The first part of every key (``llmpool:{<session>}:conversation``)."""
