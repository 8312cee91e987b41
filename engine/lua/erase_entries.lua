-- Erasure: delete one organisation's entries from a stream (a shard stream or its dead-letter
-- stream), one bounded chunk per call so Redis is never held for long.  Standalone (no
-- lib.lua): KEYS[1] may be `cv:{<shard>}:s` or `cv:{<shard>}:dead`.
--
-- ARGV: start (an id, or '(' .. id for "after"), count, org,
--       n_contacts, contacts..., n_convs, convs...
-- With no contacts and no conversations every entry of the organisation goes (organisation
-- purge); otherwise entries whose contact (k) or conversation (c) is listed.  A conversation
-- met through one of the contacts is added to the list for the rest of the call.
-- Reply: {last id read ('' = stream end), entries deleted, newly found conversation ids...}
local start, count, org = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local i = 4
local nc = tonumber(ARGV[i])
local contacts = {}
for j = 1, nc do contacts[ARGV[i + j]] = true end
i = i + nc + 1
local nv = tonumber(ARGV[i])
local convs = {}
for j = 1, nv do convs[ARGV[i + j]] = true end
local whole = (nc == 0 and nv == 0)

local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', count)
local deleted = 0
local found = {}
local last = ''
for _, e in ipairs(entries) do
  last = e[1]
  local f = e[2]
  local o, k, c = nil, nil, nil
  for x = 1, #f, 2 do
    local name = f[x]
    if name == 'o' then o = f[x + 1] elseif name == 'k' then k = f[x + 1] elseif name == 'c' then c = f[x + 1] end
  end
  if o == org and (whole or (k and contacts[k]) or (c and convs[c])) then
    redis.call('XDEL', KEYS[1], e[1])
    deleted = deleted + 1
    if c and not convs[c] then
      convs[c] = true
      table.insert(found, c)
    end
  end
end
if #entries < count then last = '' end
local out = {last, deleted}
for _, c in ipairs(found) do table.insert(out, c) end
return out
