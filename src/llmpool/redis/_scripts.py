"""The Lua scripts: each one step that Redis runs atomically.

A script runs with nothing else in between (Redis "Scripting with Lua": "Redis guarantees the
script's atomic execution"), which is what compare-and-set needs.
Every key a script touches is passed in ``KEYS`` and shares the session's hash slot (see
``_keys``), so the scripts also run on Redis Cluster.

Each returns ``{status, value}`` (two integers), decoded in ``_conversations``.
"""

from __future__ import annotations

from typing import Final

__all__ = ["SAVE"]

SAVE: Final = """
-- KEYS[1] conversation hash
-- ARGV[1] the version the caller loaded, ARGV[2] the document
-- {1, new version} | {0, stored version}: conflict
local stored = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if stored ~= tonumber(ARGV[1]) then
  return {0, stored}
end
redis.call('HSET', KEYS[1], 'document', ARGV[2], 'version', stored + 1)
return {1, stored + 1}
"""
"""Compare-and-set of a conversation: refused unless the stored version is the one loaded."""
