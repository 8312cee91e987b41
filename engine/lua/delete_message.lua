-- Delete one message: replace it in the recent list by its tombstone and publish a
-- `conversation.update` with change "message_deleted" carrying the tombstone, which the
-- workers upsert (so a late insert of the original can never resurrect it).
-- ARGV: conv, org, seq, visibility ('a'|'m'), tombstone message JSON, actor JSON
-- Reply: {'ok', rev} or {error_code}
local conv, org, seq, vis, tomb, actor = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
local m = load_meta(conv)
if not m then return {'cold'} end
if m.org ~= org or m.deleted == '1' then return {'not_found'} end
if seq < 1 or seq > m.seq then return {'not_found'} end
local rk = recent_key(conv)
local len = redis.call('LLEN', rk)
local idx = len - 1 - (m.seq - seq)
if idx >= 0 then
  redis.call('LSET', rk, idx, vis .. '{"type":"message","message":' .. tomb .. '}')
end
m.rev = redis.call('HINCRBY', meta_key(conv), 'rev', 1)
xadd_update(conv, m, '["message_deleted"]', actor, '"message":' .. tomb, vis, now_ms())
return {'ok', m.rev}
