-- Drop presence entries whose deadline has passed (engine/availability.py).  Not prefixed by lib.lua.
-- KEYS[1] = the shard's due index cv:{N}:prdue (ZSET "<org>" -> earliest deadline of that org)
-- ARGV: max organisations per call
-- The organisations' sets cv:{N}:pr:<org> share the shard's hash tag (one Cluster slot).
-- Returns a flat list org, user, org, user, ...: users with no live entry left (they left).
-- Atomic, so of several engine workers sweeping at once exactly one reports each departure.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix = string.sub(KEYS[1], 1, -6) .. 'pr:'   -- "cv:{N}:prdue" -> "cv:{N}:pr:"
local out = {}
for _, org in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))) do
  local key = prefix .. org
  local expired = redis.call('ZRANGEBYSCORE', key, '-inf', now)
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local present = {}
    for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
      local user = string.match(member, '^([^|]+)|')
      if user then present[user] = true end
    end
    local reported = {}
    for _, member in ipairs(expired) do
      local user = string.match(member, '^([^|]+)|')
      if user and not present[user] and not reported[user] then
        reported[user] = true
        table.insert(out, org)
        table.insert(out, user)
      end
    end
  end
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #first == 0 then
    redis.call('ZREM', KEYS[1], org)
  else
    redis.call('ZADD', KEYS[1], first[2], org)
  end
end
return out
