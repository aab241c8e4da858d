"""Secrets kept out of llmpool's log records.

An upstream may echo the API key in an error body (OpenAI's 401 does, masked; proxies and
self-hosted servers often in full), and the manager logs a failed request with the exception's
text. ``Redactor`` replaces, in what llmpool logs, every configured key and anything shaped
like an OpenAI key (``sk-`` and 20 or more key characters): a long secret by its first 3 and
last 4 characters (``sk-...wxyz``, as the OpenAI dashboard shows keys), a short one by
``[REDACTED]``.

Pure: one compiled regular expression, built once per manager from its clients' keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from . import _constants as C

if TYPE_CHECKING:
    import openai

__all__ = ["DEFAULT_REDACTOR", "Redactor"]

# An OpenAI-style key that is not (or not yet) configured: sk-..., sk-proj-..., sk-svcacct-...
# Not inside a longer word ("task-..." is not a key).
_KEY_SHAPE: Final = r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{20,}"


def _mask(match: re.Match[str]) -> str:
    secret = match.group()
    if len(secret) >= C.REDACTION_HINT_MIN_LENGTH:
        return f"{secret[:3]}...{secret[-4:]}"
    return C.REDACTED


class Redactor:
    """Replaces secrets in text: the given keys, and anything shaped like an OpenAI key.

    Args:
        secrets: the keys to hide, e.g. the pool's API keys. A key shorter than
            ``MIN_REDACTED_SECRET_LENGTH`` (8) characters is not hidden: placeholders such as
            ``"EMPTY"`` or ``"ollama"`` guard nothing, and hiding them would garble messages.
    """

    __slots__ = ("_pattern",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        keys = {s for s in secrets if isinstance(s, str) and len(s) >= C.MIN_REDACTED_SECRET_LENGTH}
        # Longest first: a key that contains another is replaced whole.
        parts = [re.escape(key) for key in sorted(keys, key=len, reverse=True)]
        self._pattern = re.compile("|".join([*parts, _KEY_SHAPE]))

    @classmethod
    def for_clients(cls, clients: Iterable[openai.AsyncOpenAI]) -> Redactor:
        """A redactor for the API keys (and admin API keys) of ``clients``."""
        return cls(
            key
            for client in clients
            for key in (client.api_key, getattr(client, "admin_api_key", None))
            if isinstance(key, str)
        )

    def __call__(self, text: str) -> str:
        """``text`` with every secret replaced (``sk-...wxyz`` or ``[REDACTED]``)."""
        return self._pattern.sub(_mask, text)


DEFAULT_REDACTOR: Final = Redactor()
"""Hides only what is shaped like an OpenAI key: for requests not admitted by a manager."""
