-- The users of one organisation with a live inbox socket (engine/availability.py).
-- KEYS[1] = cv:{N}:pr:<org>.  Compared with Redis' own clock, like the writers.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local users, seen = {}, {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  local user = string.match(member, '^([^|]+)|')
  if user and not seen[user] then
    seen[user] = true
    table.insert(users, user)
  end
end
return users
