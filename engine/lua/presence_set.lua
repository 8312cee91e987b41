-- Presence of inbox sockets (engine/availability.py).  Not prefixed by lib.lua.
-- KEYS[1] = the organisation's presence set  cv:{N}:pr:<org>  (ZSET "<user>|<conn>" -> deadline, ms)
-- KEYS[2] = the shard's due index             cv:{N}:prdue     (ZSET "<org>" -> earliest deadline)
-- ARGV: org, key_ttl_ms, n, then n groups of 4: user, conn, ttl_ms, mode
--   mode 'c' (socket open / heartbeat): deadline = now + ttl_ms, added if missing;
--   mode 'd' (socket closed): deadline = now + ttl_ms (the grace period), only if still there.
-- Entries are applied in order, so a connect and a disconnect of one socket in one call end closed.
-- Returns the users that had no live entry before this call and have one now (they arrived).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local org, key_ttl, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])

local present = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  local user = string.match(member, '^([^|]+)|')
  if user then present[user] = true end
end

local arrived, reported = {}, {}
for i = 0, n - 1 do
  local b = 3 + i * 4
  local user, conn, ttl, mode = ARGV[b + 1], ARGV[b + 2], tonumber(ARGV[b + 3]), ARGV[b + 4]
  local member = user .. '|' .. conn
  if mode == 'd' then
    redis.call('ZADD', KEYS[1], 'XX', now + ttl, member)
  else
    redis.call('ZADD', KEYS[1], now + ttl, member)
    if not present[user] and not reported[user] then
      reported[user] = true
      table.insert(arrived, user)
    end
    present[user] = true
  end
end

local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 then
  redis.call('ZREM', KEYS[2], org)
else
  redis.call('ZADD', KEYS[2], first[2], org)
  redis.call('PEXPIRE', KEYS[1], key_ttl)
end
return arrived
