-- Erasure: the live state of some conversations of one organisation.
-- ARGV: org, mode, n, convs...
--   mode 'close': mark each conversation deleted (appends, updates and resume now answer
--                 not_found, and hydration cannot recreate it) and drop its recent list;
--   mode 'drop' : remove its meta and recent list altogether (after PostgreSQL forgot it).
-- Only conversations of `org` are touched.  Reply: conversations touched.
local org, mode, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local touched = 0
for i = 1, n do
  local conv = ARGV[3 + i]
  local mk = meta_key(conv)
  local owner = redis.call('HGET', mk, 'org')
  if owner == org or (mode == 'drop' and not owner) then
    if mode == 'close' then
      redis.call('HSET', mk, 'deleted', '1')
    else
      redis.call('DEL', mk)
    end
    redis.call('DEL', recent_key(conv))
    touched = touched + 1
  end
end
return touched
