-- Recreate a conversation's meta from PostgreSQL after it expired from Redis.  Never
-- overwrites live meta (a concurrent append may have recreated it first).
-- ARGV: conv, org, contact, app, channel, status, assignee, tags, last_seq, rev, created_ms, meta_ttl
local mk = meta_key(ARGV[1])
if redis.call('EXISTS', mk) == 1 then return 0 end
redis.call('HSET', mk, 'org', ARGV[2], 'contact', ARGV[3], 'app', ARGV[4], 'channel', ARGV[5],
  'status', ARGV[6], 'assignee', ARGV[7], 'tags', ARGV[8], 'seq', ARGV[9], 'rev', ARGV[10],
  'created', ARGV[11], 'pseq', ARGV[9], 'deleted', '0')
redis.call('EXPIRE', mk, tonumber(ARGV[12]))
return 1
