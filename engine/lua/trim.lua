-- Trim a shard stream to `retention` entries, but never past an entry a consumer group still
-- needs: one it has not acknowledged (its oldest pending entry still in the stream) or not yet
-- read (after its last-delivered-id).  Every group of the stream counts (`persist`, `webhooks`,
-- `assignment`, ...).  The caller's own group (`persist`, the way to the system of record) is
-- always protected; any other group is ignored when it is stale, so an abandoned group cannot
-- make Redis grow for ever:
--   'idle' -- it has no consumer, or none of its consumers has touched the stream (read, claim)
--             for more than `stale_ms`: nobody is coming back for its entries;
--   'lag'  -- it is alive but needs more than the newest `lag_cap` entries: it keeps only those.
-- ARGV: own group, retention, max_step (entries removed per call at most), stale_ms, lag_cap.
-- Reply: {entries removed, checked (1 when the groups were examined), then for every stale group
-- that loses entries it still needed in this trim: name, reason}.  Without the own group: no trim.
local own, retention, step = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local stale_ms, lag_cap = tonumber(ARGV[4]), tonumber(ARGV[5])
local len = redis.call('XLEN', KEYS[1])
if len <= retention then return {0, 0} end
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if not ok then return {0, 0} end

local function parse(id)
  local a, b = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(a), tonumber(b)
end
local function less(x, y)
  local xa, xb = parse(x)
  local ya, yb = parse(y)
  return xa < ya or (xa == ya and xb < yb)
end
local function field(list, name)
  for j = 1, #list, 2 do
    if list[j] == name then return list[j + 1] end
  end
  return nil
end

-- Retention alone would keep everything from `target` on (at most `step` entries go per call).
local k = math.min(len - retention, step)
local r = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', k + 1)
local first, target = r[1][1], r[#r][1]
-- The oldest of the newest `lag_cap` entries; beyond this call's reach when c > k.
local c = len - lag_cap
local cap = nil
if c > k then cap = target elseif c >= 0 then cap = r[c + 1][1] end

-- The oldest entry a group still needs; entries below the stream's first one protect nothing
-- (a pending id whose entry was trimmed while its group was stale).
local function needs(name, delivered)
  local la, lb = parse(delivered)
  local p = int(la) .. '-' .. int(lb + 1)
  local pending = redis.call('XPENDING', KEYS[1], name, first, '+', 1)
  if pending[1] and less(pending[1][1], p) then p = pending[1][1] end
  if less(p, first) then p = first end
  return p
end
local function idle(name)
  for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], name)) do
    if field(consumer, 'idle') <= stale_ms then return false end
  end
  return true
end

local safe, has_own, stale = target, false, {}
for _, g in ipairs(groups) do
  local name = field(g, 'name')
  local p = needs(name, field(g, 'last-delivered-id'))
  if less(p, target) then
    if name == own then
      if less(p, safe) then safe = p end
    elseif idle(name) then
      stale[#stale + 1] = {name, 'idle', p}
    elseif cap and less(p, cap) then
      stale[#stale + 1] = {name, 'lag', p}
      if less(cap, safe) then safe = cap end
    elseif less(p, safe) then
      safe = p
    end
  end
  if name == own then has_own = true end
end
if not has_own then return {0, 0} end

local out = {redis.call('XTRIM', KEYS[1], 'MINID', safe), 1}
for _, s in ipairs(stale) do
  if less(s[3], safe) then   -- it really loses entries (another group may hold them anyway)
    out[#out + 1] = s[1]
    out[#out + 1] = s[2]
  end
end
return out
