-- After a worker's commit: raise each conversation's persisted sequence (pseq) so the recent
-- list may be trimmed down to its cap again.  Only existing meta is touched.
-- ARGV: n, then n pairs conv, seq
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  local mk = meta_key(ARGV[2 + i * 2])
  local seq = tonumber(ARGV[3 + i * 2])
  local cur = redis.call('HGET', mk, 'pseq')
  if cur and tonumber(cur) < seq then redis.call('HSET', mk, 'pseq', seq) end
end
return n
