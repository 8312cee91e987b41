-- Trim a shard stream to `retention` entries, but never below what the persisting group has
-- not acknowledged (its oldest pending entry) or not yet read (its last delivered id).
-- ARGV: group, retention, max_step.  Reply: entries removed.
local group, retention, step = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local len = redis.call('XLEN', KEYS[1])
if len <= retention then return 0 end
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if not ok then return 0 end
local last = nil
for _, g in ipairs(groups) do
  local name, delivered = nil, nil
  for j = 1, #g, 2 do
    if g[j] == 'name' then name = g[j + 1] end
    if g[j] == 'last-delivered-id' then delivered = g[j + 1] end
  end
  if name == group then last = delivered end
end
if not last then return 0 end
local function parse(id)
  local a, b = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(a), tonumber(b)
end
local function less(x, y)
  local xa, xb = parse(x)
  local ya, yb = parse(y)
  return xa < ya or (xa == ya and xb < yb)
end
-- Everything strictly below `safe` is persisted and acknowledged.
local la, lb = parse(last)
local safe = int(la) .. '-' .. int(lb + 1)
local pending = redis.call('XPENDING', KEYS[1], group)
if pending[1] > 0 and pending[2] and less(pending[2], safe) then safe = pending[2] end
local k = math.min(len - retention, step)
local r = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', k + 1)
local minid = r[#r][1]
if less(safe, minid) then minid = safe end
return redis.call('XTRIM', KEYS[1], 'MINID', minid)
