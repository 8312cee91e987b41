-- Sliding-window throttle over several keys at once (one round trip, atomic).
-- KEYS: the throttle keys.  ARGV[1]: mode, ARGV[2]: a unique member id,
-- then for each key: limit, window in milliseconds.
--   peek : answer the wait (ms) before every key allows one more event; change nothing
--   hit  : like peek, and when every key allows it, record the event in all of them
--   add  : record the event in every key regardless (counting failures)
--   clear: forget every key
-- Each key is a sorted set of event times (ms); it keeps at most `limit` entries and
-- expires with its window, so memory per key is bounded.
local mode = ARGV[1]
local member = ARGV[2]
if mode == 'clear' then
  for i = 1, #KEYS do redis.call('DEL', KEYS[i]) end
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = 0
for i = 1, #KEYS do
  local limit = tonumber(ARGV[1 + 2 * i])
  local window = tonumber(ARGV[2 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if mode ~= 'add' then
    local count = redis.call('ZCARD', KEYS[i])
    if count >= limit then
      local oldest = redis.call('ZRANGE', KEYS[i], count - limit, count - limit, 'WITHSCORES')
      local w = tonumber(oldest[2]) + window - now
      if w < 1 then w = 1 end
      if w > wait then wait = w end
    end
  end
end
if mode == 'peek' or (mode == 'hit' and wait > 0) then
  return wait
end
for i = 1, #KEYS do
  local limit = tonumber(ARGV[1 + 2 * i])
  local window = tonumber(ARGV[2 + 2 * i])
  redis.call('ZADD', KEYS[i], now, now .. ':' .. member)
  local extra = redis.call('ZCARD', KEYS[i]) - limit
  if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[i], 0, extra - 1) end
  redis.call('PEXPIRE', KEYS[i], window)
end
return 0
