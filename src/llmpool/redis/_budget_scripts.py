"""The shared budgets' Lua scripts: one admission, one settlement, leases, heartbeats.

Every script reads Redis's clock (``TIME``, milliseconds here) and no client's, so instances
on different machines agree on every bucket's refill and every lease's expiry. All keys of one
script share the upstream's hash tag (``_keys.UpstreamKeys``): the scripts run on Redis
Cluster. Redis runs each script with nothing else in between (redis.io, "Scripting with
Lua"); effects replication (the default since Redis 5) makes ``TIME`` safe in a script that
writes.

The bucket arithmetic is ``_window.WindowBucket``'s, to the float (a test compares them).
"""

from __future__ import annotations

from typing import Final

__all__ = ["ADMIT", "DRAIN", "HEARTBEAT", "LEASES", "REJOIN", "SETTLE"]

_BUCKETS: Final = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
-- A window-safe token bucket (_window.py): capacity max(1, limit * burst / 60), refill
-- (limit - capacity) / (60 + margin) per second.
local function shape(limit, burst, margin)
  local capacity = math.max(1, limit * burst / 60)
  local rate = (limit - capacity) / (60 + margin)
  if rate <= 0 then rate = limit / (60 + margin) end
  return capacity, rate / 1000
end
-- The bucket's level at now (full when it was never used).
local function level(hash, lfield, tfield, capacity, rate, now)
  local stored = redis.call('HMGET', hash, lfield, tfield)
  if not stored[1] then return capacity end
  local units, at = tonumber(stored[1]), tonumber(stored[2])
  if now > at then units = units + (now - at) * rate end
  return math.min(units, capacity)
end
-- The limit in force: the configured one (0: none) or the one learned from headers, lower.
local function effective(configured, learned)
  learned = tonumber(learned or '0')
  if configured > 0 and learned > 0 then return math.min(configured, learned) end
  if configured > 0 then return configured end
  return learned
end
"""

ADMIT: Final = (
    _BUCKETS
    + """
-- KEYS[1] the model's budget hash, KEYS[2] the upstream's leases (zset: lease -> expiry ms)
-- ARGV[1] lease id, [2] tokens, [3] rpm, [4] tpm, [5] concurrency (0: none),
-- [6] lease ttl ms, [7] burst s, [8] margin s
-- {1, 0, requests left, tokens left}: admitted | {0, ms}: the buckets are short for ms |
-- {-1, ms}: every slot is leased, the first lease ends in ms
local now = now_ms()
local slots = tonumber(ARGV[5])
if slots > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= slots then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return {-1, math.max(1, math.ceil(tonumber(first[2]) - now))}
  end
end
local burst, margin, tokens = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[2])
local learned = redis.call('HMGET', KEYS[1], 'lr', 'lt')
local rpm = effective(tonumber(ARGV[3]), learned[1])
local tpm = effective(tonumber(ARGV[4]), learned[2])
local wait, requests, units = 0, nil, nil
if rpm > 0 then
  local capacity, rate = shape(rpm, burst, margin)
  requests = level(KEYS[1], 'rl', 'ru', capacity, rate, now)
  if requests < 1 - 1e-9 then wait = (1 - requests) / rate end
end
if tpm > 0 and tokens > 0 then
  local capacity, rate = shape(tpm, burst, margin)
  units = level(KEYS[1], 'tl', 'tu', capacity, rate, now)
  local need = math.min(tokens, capacity)
  if units < need - 1e-9 then wait = math.max(wait, (need - units) / rate) end
end
if wait > 0 then return {0, math.max(1, math.ceil(wait))} end
local left_requests, left_tokens = -1, -1
if requests then
  redis.call('HSET', KEYS[1], 'rl', requests - 1, 'ru', now)
  left_requests = math.floor(requests - 1)
end
if units then
  redis.call('HSET', KEYS[1], 'tl', units - tokens, 'tu', now)
  left_tokens = math.floor(units - tokens)
end
if slots > 0 then redis.call('ZADD', KEYS[2], now + tonumber(ARGV[6]), ARGV[1]) end
return {1, 0, left_requests, left_tokens}
"""
)
"""Admission: a concurrency lease, one request and ``tokens``, all or nothing, on Redis's clock.
Nothing is written when the answer is a wait."""

SETTLE: Final = (
    _BUCKETS
    + """
-- KEYS[1] the model's budget hash, KEYS[2] the upstream's leases
-- ARGV[1] lease id ('': none), [2] requests back, [3] tokens back (negative: a charge),
-- [4] rpm, [5] tpm, [6] burst s, [7] margin s, [8] channel to tell ('': none),
-- [9] concurrency (0: none)
local now = now_ms()
-- Waiters for a slot exist only while every slot is leased: tell them only then.
local full = false
if ARGV[1] ~= '' then
  local slots = tonumber(ARGV[9])
  full = slots > 0 and redis.call('ZCARD', KEYS[2]) >= slots
  redis.call('ZREM', KEYS[2], ARGV[1])
end
local burst, margin = tonumber(ARGV[6]), tonumber(ARGV[7])
local learned = redis.call('HMGET', KEYS[1], 'lr', 'lt')
local function give(limit, amount, lfield, tfield)
  if limit <= 0 or amount == 0 then return end
  local capacity, rate = shape(limit, burst, margin)
  local units = level(KEYS[1], lfield, tfield, capacity, rate, now)
  redis.call('HSET', KEYS[1], lfield, math.min(capacity, units + amount), tfield, now)
end
give(effective(tonumber(ARGV[4]), learned[1]), tonumber(ARGV[2]), 'rl', 'ru')
give(effective(tonumber(ARGV[5]), learned[2]), tonumber(ARGV[3]), 'tl', 'tu')
if ARGV[8] ~= '' and (full or tonumber(ARGV[2]) > 0) then
  redis.call('PUBLISH', ARGV[8], 'release')
end
return 1
"""
)
"""Settlement: end a lease, give back (or charge) requests and tokens, and tell the waiters
when a slot frees that somebody may be waiting for (every slot was leased) or a request
comes back. Budget waiters elsewhere wake by their own timers; refunds of tokens only make
those sooner, so they are not announced (a message costs every instance a parse)."""

LEASES: Final = """
-- KEYS[1] the upstream's leases; ARGV[1] 'XX' (renew: only leases still there) or 'NX'
-- (adopt), ARGV[2] ttl ms, ARGV[3..] lease ids. Returns how many are held now.
local t = redis.call('TIME')
local expiry = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000 + tonumber(ARGV[2])
local held = 0
for i = 3, #ARGV do
  if ARGV[1] == 'XX' then
    held = held + redis.call('ZADD', KEYS[1], 'XX', 'CH', expiry, ARGV[i])
  else
    held = held + redis.call('ZADD', KEYS[1], 'NX', expiry, ARGV[i])
  end
end
return held
"""
"""Renew leases that are still held (``XX``), or adopt ones granted while Redis was away."""

HEARTBEAT: Final = """
-- KEYS[1] the instances (zset: id -> last heartbeat ms); ARGV[1] this instance, ARGV[2] ms
-- after which a silent instance is no longer live, ARGV[3] the members channel. Returns the
-- live instances, this one too. An instance that was not live publishes the new count, so
-- the others count it at once rather than at their next heartbeat.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
local joined = redis.call('ZADD', KEYS[1], now, ARGV[1])
local live = redis.call('ZCARD', KEYS[1])
if joined == 1 then redis.call('PUBLISH', ARGV[3], tostring(live)) end
return live
"""
"""Register this instance and count the live ones (those heard from within the horizon);
an instance joining publishes the count on the members channel."""

REJOIN: Final = """
-- KEYS[1] the rejoin instant (ms on Redis's clock); ARGV[1] grace ms
-- Returns the ms from now until the instant every instance coming back shares again: the
-- first one back sets it grace ms ahead, the others read it.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local at = tonumber(redis.call('GET', KEYS[1]) or '0')
if at == 0 or at + tonumber(ARGV[1]) < now then
  at = now + tonumber(ARGV[1])
  redis.call('SET', KEYS[1], at, 'PX', 2 * tonumber(ARGV[1]) + 1000)
end
return at - now
"""
"""One instant at which every instance that lost Redis goes back to the shared budgets, so
none admits alone while another already spends the shared ones."""

DRAIN: Final = (
    _BUCKETS
    + """
-- KEYS[1] the model's budget hash; ARGV[1] rpm, [2] tpm, [3] burst s, [4] margin s
-- Empties both buckets (keeps a debt): what an instance coming back does, so the shared
-- budget starts from nothing, as each instance's own share did when Redis went away.
local now = now_ms()
local burst, margin = tonumber(ARGV[3]), tonumber(ARGV[4])
local learned = redis.call('HMGET', KEYS[1], 'lr', 'lt')
local function drain(limit, lfield, tfield)
  if limit <= 0 then return end
  local capacity, rate = shape(limit, burst, margin)
  local units = level(KEYS[1], lfield, tfield, capacity, rate, now)
  redis.call('HSET', KEYS[1], lfield, math.min(units, 0), tfield, now)
end
drain(effective(tonumber(ARGV[1]), learned[1]), 'rl', 'ru')
drain(effective(tonumber(ARGV[2]), learned[2]), 'tl', 'tu')
return 1
"""
)
"""The way back: a bucket holds at most nothing. The shares spent alone are then never
spent again from a bucket that refilled (or restarted full) meanwhile (docs/redis.md)."""
