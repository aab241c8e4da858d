"""The Lua scripts: each one step that Redis runs atomically.

A script runs with nothing else in between (Redis "Scripting with Lua": "Redis guarantees the
script's atomic execution"), which is what compare-and-set and compare-and-delete need.
Every key a script touches is passed in ``KEYS`` and shares the session's hash slot (see
``_keys``), so the scripts also run on Redis Cluster. Times are Redis's own: expiries are
``PX``/``PEXPIRE`` in milliseconds, remaining times ``PTTL``; no script reads a client's clock.

Each returns ``{status, value}`` (two integers), decoded in ``_conversations`` and ``_turns``.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ACQUIRE", "RELEASE", "RENEW", "SAVE"]

SAVE: Final = """
-- KEYS[1] conversation hash, KEYS[2] fence counter
-- ARGV[1] the version the caller loaded, ARGV[2] the document, ARGV[3] fencing token or ''
-- {1, new version} | {0, stored version}: conflict | {-1, last token issued}: fenced out
if ARGV[3] ~= '' then
  local issued = tonumber(redis.call('GET', KEYS[2]) or '0')
  if tonumber(ARGV[3]) ~= issued then
    return {-1, issued}
  end
end
local stored = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if stored ~= tonumber(ARGV[1]) then
  return {0, stored}
end
redis.call('HSET', KEYS[1], 'document', ARGV[2], 'version', stored + 1)
return {1, stored + 1}
"""
"""Compare-and-set of a conversation, optionally fenced: refused unless the stored version is
the one loaded, and (with a token) unless no newer turn was granted since."""

ACQUIRE: Final = """
-- KEYS[1] turn lock, KEYS[2] fence counter; ARGV[1] ttl in milliseconds
-- {token, 0}: acquired | {0, PTTL}: held by another (-1: held without expiry)
local remaining = redis.call('PTTL', KEYS[1])
if remaining ~= -2 then
  return {0, remaining}
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
return {token, 0}
"""
"""Take the turn lock if it is free: a new fencing token (INCR, so it only grows) held with
an expiry on Redis's clock."""

RENEW: Final = """
-- KEYS[1] turn lock; ARGV[1] the holder's token, ARGV[2] ttl in milliseconds
-- {1, 0}: renewed | {0, holder's token, 0 if none}: not the holder any more
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, 0}
end
return {0, tonumber(holder or '0')}
"""
"""Extend the lock's expiry to ttl from now (Redis's now), only if still the holder."""

RELEASE: Final = """
-- KEYS[1] turn lock; ARGV[1] the holder's token
-- {1, 0}: released | {0, holder's token, 0 if none}: not the holder (nothing deleted)
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return {1, 0}
end
return {0, tonumber(holder or '0')}
"""
"""Compare-and-delete: a holder whose lock expired never frees its successor's."""
