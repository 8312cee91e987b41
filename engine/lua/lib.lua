-- Shared prelude, prepended to every script of this folder when it is loaded (engine/scripts.py).
-- KEYS[1] is always the shard's stream `cv:{<shard>}:s`; every other key of the shard is built
-- from the same prefix, so all keys a call touches share one hash tag = one Cluster slot.
local P = string.sub(KEYS[1], 1, -2)          -- "cv:{<shard>}:"
local function meta_key(conv) return P .. 'c:' .. conv end
local function recent_key(conv) return P .. 'r:' .. conv end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function int(n) return string.format('%.0f', n) end

-- Values spliced into JSON here are server-validated: uuids, enums, integers and tag names
-- ([a-z0-9-]); free text never reaches Lua unencoded (Python encodes it with orjson).
local function jstr(v)
  if v == nil or v == false or v == '' then return 'null' end
  return '"' .. v .. '"'
end

local function tags_json(t)
  if t == nil or t == false or t == '' then return '[]' end
  return '["' .. (string.gsub(t, ',', '","')) .. '"]'
end

local META_FIELDS = {'org', 'contact', 'app', 'channel', 'status', 'assignee', 'tags', 'seq', 'rev',
                     'created', 'pseq', 'deleted'}

local function load_meta(conv)
  local v = redis.call('HMGET', meta_key(conv), unpack(META_FIELDS))
  if not v[1] then return nil end
  local m = {}
  for i, f in ipairs(META_FIELDS) do m[f] = v[i] or '' end
  m.seq = tonumber(m.seq) or 0
  m.rev = tonumber(m.rev) or 0
  m.pseq = tonumber(m.pseq) or 0
  return m
end

-- The conversation as members see it, and the smaller view a shopper gets (no tags/assignee).
local function snapshot(conv, m)
  return '{"id":"' .. conv .. '","status":"' .. m.status .. '","assignee_id":' .. jstr(m.assignee)
    .. ',"tags":' .. tags_json(m.tags) .. ',"contact_id":' .. jstr(m.contact) .. ',"app_id":' .. jstr(m.app)
    .. ',"channel":"' .. m.channel .. '","seq":' .. int(m.seq) .. ',"rev":' .. int(m.rev)
    .. ',"created_at":' .. m.created .. ',"deleted":' .. (m.deleted == '1' and 'true' or 'false') .. '}'
end

local function shopper_snapshot(conv, m)
  return '{"id":"' .. conv .. '","status":"' .. m.status .. '","seq":' .. int(m.seq) .. ',"rev":' .. int(m.rev)
    .. ',"created_at":' .. m.created .. ',"deleted":' .. (m.deleted == '1' and 'true' or 'false') .. '}'
end

-- One `conversation.update` stream entry: `f` for members, `fs` for shoppers, same change list.
-- `extra` is a pre-encoded JSON member (e.g. `"message":{...}`) or ''.
local function xadd_update(conv, m, changes, actor, extra, visibility, now)
  local head = '{"type":"conversation.update","changes":' .. changes .. ',"actor":' .. actor
  if extra ~= '' then head = head .. ',' .. extra end
  local full = head .. ',"conversation":' .. snapshot(conv, m) .. ',"at":' .. int(now) .. '}'
  local shop = head .. ',"conversation":' .. shopper_snapshot(conv, m) .. ',"at":' .. int(now) .. '}'
  return redis.call('XADD', KEYS[1], '*', 't', 'u', 'o', m.org, 'k', m.contact, 'c', conv,
    'v', visibility, 'f', full, 'fs', shop)
end
