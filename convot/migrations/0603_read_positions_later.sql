-- Read positions of conversations PostgreSQL does not have yet.  A member's first `read` of a
-- brand-new conversation usually reaches the gateway before the engine workers have persisted
-- the conversation from Redis Streams (~100 ms); convot_store_read_positions (0602) skipped it,
-- and the position was stored only by the member's next read.  This version tells the caller
-- which positions to submit again later, and the gateway (gateway/server.py `ReadRetries`) holds
-- them and retries with a growing delay for about 30 seconds.
--
-- Same contract as 0602 otherwise: SECURITY INVOKER, so it runs as the services' role and
-- switches the row-level-security scope per organisation with set_config('convot.org_id', ...,
-- true), and the tenant policies apply to every row it reads and writes; the caller has already
-- checked that each conversation belongs to the member's organisation; a position never goes
-- down (a retry of an older position changes nothing).  Only the return type changes, from the
-- number of rows written to the list below, so the function is replaced in the same transaction
-- (a gateway of the previous version ignores the answer and keeps working).
--
-- positions: [{"org": uuid, "member": uuid, "conversation": uuid, "seq": int}, ...]
-- returns the 0-based indexes into `positions` of the items to submit again later:
--   * the member exists but the conversation does not (yet): its row is still on its way;
--   * every item of an organisation whose part failed because a member or a conversation was
--     deleted while it was written (the rest of that part is stored on the next call, the
--     deleted one is skipped then or handed back until the caller gives up).
-- A member that does not exist is skipped and not handed back: nothing will ever store it.
DROP FUNCTION convot_store_read_positions(jsonb);

CREATE FUNCTION convot_store_read_positions(positions jsonb) RETURNS integer[]
LANGUAGE plpgsql SECURITY INVOKER SET search_path = public AS $$
DECLARE
    scope_org uuid;
    missing integer[];
    later integer[] := '{}';
BEGIN
    FOR scope_org IN SELECT DISTINCT (value->>'org')::uuid FROM jsonb_array_elements(positions) LOOP
        PERFORM set_config('convot.org_id', scope_org::text, true);
        BEGIN
            -- Looked up before the insert: a conversation committed in between is then both
            -- handed back and stored (harmless), never neither.
            missing := ARRAY(
                SELECT (e.n - 1)::integer
                FROM jsonb_array_elements(positions) WITH ORDINALITY AS e(value, n)
                WHERE (e.value->>'org')::uuid = scope_org AND (e.value->>'seq')::bigint >= 0
                  AND EXISTS (SELECT 1 FROM members m
                              WHERE m.org_id = scope_org AND m.user_id = (e.value->>'member')::uuid)
                  AND NOT EXISTS (SELECT 1 FROM conversations c
                                  WHERE c.org_id = scope_org AND c.id = (e.value->>'conversation')::uuid)
                ORDER BY e.n);
            INSERT INTO read_positions AS r (org_id, user_id, conversation_id, seq, read_at)
            SELECT scope_org, p.member, p.conversation, max(p.seq), now()
            FROM jsonb_to_recordset(positions) AS p(org uuid, member uuid, conversation uuid, seq bigint)
            WHERE p.org = scope_org AND p.seq >= 0
              AND EXISTS (SELECT 1 FROM members m WHERE m.org_id = scope_org AND m.user_id = p.member)
              AND EXISTS (SELECT 1 FROM conversations c WHERE c.org_id = scope_org AND c.id = p.conversation)
            GROUP BY p.member, p.conversation
            ON CONFLICT (org_id, user_id, conversation_id) DO UPDATE
                SET seq = GREATEST(r.seq, EXCLUDED.seq), read_at = EXCLUDED.read_at
                WHERE EXCLUDED.seq > r.seq;
            later := later || missing;
        EXCEPTION WHEN foreign_key_violation THEN
            -- a member or conversation deleted meanwhile rolled this organisation's part back:
            -- hand all of it back rather than lose the positions of the others
            later := later || ARRAY(
                SELECT (e.n - 1)::integer
                FROM jsonb_array_elements(positions) WITH ORDINALITY AS e(value, n)
                WHERE (e.value->>'org')::uuid = scope_org AND (e.value->>'seq')::bigint >= 0
                ORDER BY e.n);
        END;
    END LOOP;
    PERFORM set_config('convot.org_id', '', true);
    RETURN later;
END $$;

REVOKE ALL ON FUNCTION convot_store_read_positions(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION convot_store_read_positions(jsonb) TO convot_service;
