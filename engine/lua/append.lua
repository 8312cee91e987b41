-- Append messages to one shard, atomically per message: authorise against the conversation's
-- meta, deduplicate by client message id, assign the next per-conversation sequence number,
-- XADD the event, keep it in the conversation's recent list (for resume) and apply the
-- reopen rule.  One call carries every send of one event-loop turn for this shard.
--
-- ARGV: idem_ttl, recent_cap, meta_ttl, n, then n groups of 13:
--   conv, mode ('e' existing | 'n' new conversation | 'c' create only, no message),
--   org, contact ('' = member sender; for 'n'/'c' the new conversation's contact),
--   app, channel, client_msg_id ('' = none), type (incoming|outgoing|note|activity),
--   frame_head, frame_mid, frame_tail (message frame split around seq and created_at),
--   message id, actor (JSON object, for the created event)
-- Reply per send: {'ok', seq, id, created_ms, duplicate(0|1), conv} or {error_code}.
local idem_ttl = tonumber(ARGV[1])
local recent_cap = tonumber(ARGV[2])
local meta_ttl = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local now = now_ms()
local out = {}

for i = 0, n - 1 do
  local b = 4 + i * 13
  local conv, mode, org, contact = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local app, channel, cmid, mtype = ARGV[b + 5], ARGV[b + 6], ARGV[b + 7], ARGV[b + 8]
  local head, mid, tail, mid_id, actor = ARGV[b + 9], ARGV[b + 10], ARGV[b + 11], ARGV[b + 12], ARGV[b + 13]
  local mk = meta_key(conv)
  local result = nil
  local m = nil
  local idem = nil

  if mode == 'e' then
    m = load_meta(conv)
    if not m then
      result = {'cold'}
    elseif m.org ~= org or m.deleted == '1' or (contact ~= '' and m.contact ~= contact) then
      result = {'not_found'}
    elseif cmid ~= '' then
      idem = P .. 'i:' .. conv .. ':' .. cmid
    end
  else
    if cmid ~= '' then
      idem = P .. 'i:n:' .. contact .. ':' .. cmid
    end
  end

  if not result and idem then
    local prev = redis.call('GET', idem)
    if prev then
      local s, id, at, c = string.match(prev, '^(%d+)|([^|]+)|(%d+)|(.+)$')
      result = {'ok', tonumber(s), id, tonumber(at), 1, c}
    end
  end

  if not result and mode ~= 'e' then
    if redis.call('EXISTS', mk) == 1 then
      result = {'conflict'}
    else
      redis.call('HSET', mk, 'org', org, 'contact', contact, 'app', app, 'channel', channel,
        'status', 'open', 'assignee', '', 'tags', '', 'seq', 0, 'rev', 1, 'created', int(now),
        'pseq', 0, 'deleted', '0')
      redis.call('EXPIRE', mk, meta_ttl)
      m = load_meta(conv)
      xadd_update(conv, m, '["created"]', actor, '', 'a', now)
      if mode == 'c' then
        result = {'ok', 0, '', now, 0, conv}
        if idem then
          redis.call('SET', idem, '0||' .. int(now) .. '|' .. conv, 'EX', idem_ttl)
        end
      end
    end
  end

  if not result then
    local seq = redis.call('HINCRBY', mk, 'seq', 1)
    m.seq = seq
    local frame = head .. int(seq) .. mid .. int(now) .. tail
    local vis = (mtype == 'note') and 'm' or 'a'
    redis.call('XADD', KEYS[1], '*', 't', 'm', 'o', org, 'k', m.contact, 'c', conv, 's', seq, 'v', vis,
      'f', frame, 'a', m.app, 'h', m.channel, 'ct', m.created)
    local rk = recent_key(conv)
    redis.call('RPUSH', rk, vis .. frame)
    -- Keep at least recent_cap events, and never drop one PostgreSQL does not have yet.
    local keep = math.max(recent_cap, seq - m.pseq)
    redis.call('LTRIM', rk, -keep, -1)
    redis.call('EXPIRE', rk, meta_ttl)
    redis.call('EXPIRE', mk, meta_ttl)
    if idem then
      redis.call('SET', idem, int(seq) .. '|' .. mid_id .. '|' .. int(now) .. '|' .. conv, 'EX', idem_ttl)
    end
    -- A shopper's message reopens a pending or resolved conversation; activity never does.
    if mtype == 'incoming' and m.status ~= 'open' then
      m.status = 'open'
      m.rev = redis.call('HINCRBY', mk, 'rev', 1)
      redis.call('HSET', mk, 'status', 'open')
      xadd_update(conv, m, '["status"]', '{"kind":"contact","id":' .. jstr(m.contact) .. '}', '', 'a', now)
    end
    result = {'ok', seq, mid_id, now, 0, conv}
  end
  out[i + 1] = result
end
return out
