-- Verified identity: move conversations from the browser's anonymous contact to the identified
-- one, so the new contact's token may write into them.  Each moved conversation publishes a
-- `conversation.update` with change "contact" (and a new rev) that carries the new snapshot.
-- ARGV: org, from_contact, to_contact, actor (JSON), n, convs...
-- Reply: conversations moved (those live in Redis; the others exist only in PostgreSQL).
local org, from, to, actor, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local moved = 0
local now = now_ms()
for i = 1, n do
  local conv = ARGV[5 + i]
  local m = load_meta(conv)
  if m and m.org == org and m.contact == from and m.deleted ~= '1' then
    local mk = meta_key(conv)
    m.contact = to
    m.rev = redis.call('HINCRBY', mk, 'rev', 1)
    redis.call('HSET', mk, 'contact', to)
    xadd_update(conv, m, '["contact"]', actor, '', 'a', now)
    moved = moved + 1
  end
end
return moved
