-- Read what a resuming client missed from the recent list, with the numbers to decide what
-- must come from PostgreSQL.  ARGV: conv, org, contact ('' for members), after_seq
-- Reply: {'ok', seq, first_seq_in_list, items...} or {error_code}
local conv, org, contact, after = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local m = load_meta(conv)
if not m then return {'cold'} end
if m.org ~= org or m.deleted == '1' or (contact ~= '' and m.contact ~= contact) then return {'not_found'} end
local rk = recent_key(conv)
local len = redis.call('LLEN', rk)
local first = m.seq - len + 1
local out = {'ok', m.seq, first}
if after >= m.seq then return out end
local start = math.max(after + 1, first) - first
local items = redis.call('LRANGE', rk, start, -1)
for _, it in ipairs(items) do table.insert(out, it) end
return out
