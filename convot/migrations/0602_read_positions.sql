-- Read positions: how far each member has read each conversation, kept by the server so the
-- inbox's unread state follows a member to another browser or device (docs/inbox.md "Unread").
-- The gateway records them from members' `read` frames (gateway/server.py `Gateway.on_read`),
-- one round trip per event-loop turn; the admin API answers the caller's own `read_seq` with
-- each conversation.  A position only ever rises.

CREATE TABLE read_positions (
    org_id          uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    user_id         uuid NOT NULL,
    conversation_id uuid NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq             bigint NOT NULL CHECK (seq >= 0),
    read_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id, conversation_id),
    -- a removed member's positions go with the membership
    FOREIGN KEY (org_id, user_id) REFERENCES members (org_id, user_id) ON DELETE CASCADE
);
CREATE INDEX read_positions_conversation ON read_positions (conversation_id);
ALTER TABLE read_positions ENABLE ROW LEVEL SECURITY;
ALTER TABLE read_positions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON read_positions USING (org_id = convot_org()) WITH CHECK (org_id = convot_org());
GRANT SELECT, INSERT, UPDATE, DELETE ON read_positions TO convot_service;

-- Store the read positions of one event-loop turn in one round trip.
--
-- SECURITY INVOKER, like convot_subject_problems (0601): it runs as the services' role and
-- switches the row-level-security scope per organisation with set_config('convot.org_id', ...,
-- true), so the tenant policies apply to every row it reads and writes.  The caller has already
-- checked that each conversation belongs to the member's organisation (the gateway's ownership
-- check); here a position is written only while its member and its conversation exist in
-- PostgreSQL (a conversation still only in Redis, in its first moments or while PostgreSQL was
-- away, is skipped: the member's next read stores it).  A member or conversation deleted
-- concurrently skips that organisation's part of the batch instead of failing the others.
--
-- positions: [{"org": uuid, "member": uuid, "conversation": uuid, "seq": int}, ...]
-- returns the number of rows inserted or raised.
CREATE FUNCTION convot_store_read_positions(positions jsonb) RETURNS integer
LANGUAGE plpgsql SECURITY INVOKER SET search_path = public AS $$
DECLARE
    scope_org uuid;
    written integer;
    total integer := 0;
BEGIN
    FOR scope_org IN SELECT DISTINCT (value->>'org')::uuid FROM jsonb_array_elements(positions) LOOP
        PERFORM set_config('convot.org_id', scope_org::text, true);
        BEGIN
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
            GET DIAGNOSTICS written = ROW_COUNT;
            total := total + written;
        EXCEPTION WHEN foreign_key_violation THEN
            NULL;   -- the member or the conversation went away meanwhile: nothing to keep
        END;
    END LOOP;
    PERFORM set_config('convot.org_id', '', true);
    RETURN total;
END $$;

REVOKE ALL ON FUNCTION convot_store_read_positions(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION convot_store_read_positions(jsonb) TO convot_service;
