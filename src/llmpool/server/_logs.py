"""The server's log records, and the JSON formatter of ``llmpool serve --log-format json``.

Every record is on the ``llmpool.server`` logger with its event in ``extra``
(``llmpool_event``: ``listening``, ``connect``, ``disconnect``, ``reject``, ``turn_start``,
``turn_end``, ``error`` (an error frame sent to one socket: ``session_busy``,
``invalid_message``…; a turn's error is its ``turn_end`` outcome), ``drain``) and its ids:
``connection_id``, ``session`` (the first 12 hex characters of the SHA-256 of the session id:
a session can be followed through the logs without its id being in them), ``turn_id``,
``request_id``, and the event's own fields (``code``, ``outcome``…).
No message text is logged unless ``ServerConfig.log_content`` is set.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any, Final

from . import _constants as C

__all__ = ["JsonFormatter", "log_event", "logger", "session_hash"]

logger = logging.getLogger(C.SERVER_LOGGER)
logger.addHandler(logging.NullHandler())  # the application configures logging

_FIELDS: Final = "llmpool_fields"


def session_hash(session_id: str) -> str:
    """The session id as logs show it: a prefix of its SHA-256, hex."""
    digest = hashlib.sha256(session_id.encode()).hexdigest()
    return digest[: C.SESSION_HASH_CHARS]


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event`` with ``fields`` (``None`` values left out); nothing built if disabled."""
    if not logger.isEnabledFor(level):
        return
    kept = {name: value for name, value in fields.items() if value is not None}
    details = " ".join(f"{name}={value}" for name, value in kept.items())
    logger.log(level, "%s %s", event, details, extra={"llmpool_event": event, _FIELDS: kept})


class JsonFormatter(logging.Formatter):
    """One JSON object per line.

    Keys: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``event``, ``message``, the event's
    fields, and an exception as ``exc_info`` text.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "event": getattr(record, "llmpool_event", None),
            "message": record.getMessage(),
        }
        data.update(getattr(record, _FIELDS, {}))
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)
