-- Change a conversation's state (status, assignee, tags) or delete it, and publish the change
-- as one `conversation.update` event.  No change -> no event.
-- ARGV: conv, org, status ('' = keep), assignee ('-' = keep, '' = unassign, uuid = set,
--       '?' .. uuid = set only if the conversation has no assignee, else keep the one it has),
--       tags_set ('-' = keep, else comma list), tags_add, tags_remove (comma lists or ''),
--       delete ('1' deletes the conversation), actor (JSON object), meta_ttl
-- Reply: {'ok', changed(0|1), rev, kept(0|1)} or {error_code}; kept = 1 when a '?' assignee was
-- not set because the conversation already had one (the rest of the change still applies).
local conv, org = ARGV[1], ARGV[2]
local status, assignee, tags_set, tags_add, tags_remove = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local delete, actor, meta_ttl = ARGV[8], ARGV[9], tonumber(ARGV[10])
local m = load_meta(conv)
if not m then return {'cold'} end
if m.org ~= org or m.deleted == '1' then return {'not_found'} end

local changes = {}
local kept_assignee = 0
local mk = meta_key(conv)
if delete == '1' then
  m.deleted = '1'
  table.insert(changes, '"deleted"')
  redis.call('DEL', recent_key(conv))
else
  if status ~= '' and status ~= m.status then
    m.status = status
    table.insert(changes, '"status"')
  end
  if string.sub(assignee, 1, 1) == '?' then
    -- auto-assignment: a manual assignment that got there first keeps its assignee, atomically
    if m.assignee ~= '' then
      kept_assignee = 1
      assignee = '-'
    else
      assignee = string.sub(assignee, 2)
    end
  end
  if assignee ~= '-' and assignee ~= m.assignee then
    m.assignee = assignee
    table.insert(changes, '"assignment"')
  end
  local set = {}
  local order = {}
  local function add(name)
    if name ~= '' and not set[name] then set[name] = true; table.insert(order, name) end
  end
  if tags_set ~= '-' then
    for t in string.gmatch(tags_set, '[^,]+') do add(t) end
  else
    for t in string.gmatch(m.tags, '[^,]+') do add(t) end
  end
  for t in string.gmatch(tags_add, '[^,]+') do add(t) end
  for t in string.gmatch(tags_remove, '[^,]+') do set[t] = nil end
  local kept = {}
  for _, t in ipairs(order) do if set[t] then table.insert(kept, t) end end
  table.sort(kept)
  local new_tags = table.concat(kept, ',')
  if new_tags ~= m.tags then
    m.tags = new_tags
    table.insert(changes, '"tags"')
  end
end
if #changes == 0 then return {'ok', 0, m.rev, kept_assignee} end
m.rev = redis.call('HINCRBY', mk, 'rev', 1)
redis.call('HSET', mk, 'status', m.status, 'assignee', m.assignee, 'tags', m.tags, 'deleted', m.deleted)
redis.call('EXPIRE', mk, meta_ttl)
xadd_update(conv, m, '[' .. table.concat(changes, ',') .. ']', actor, '', 'a', now_ms())
return {'ok', 1, m.rev, kept_assignee}
