-- Real-time engine (issue 3): a persisted batch in one round trip.
--
-- The engine worker used to send ~5 statements per organisation per batch; with many
-- organisations in a batch the round trips dominated.  This function runs the same
-- statements server-side.  It is SECURITY INVOKER: it runs as the services' role, and switches
-- the row-level-security scope per organisation with set_config('convot.org_id', ..., true)
-- exactly as the client did, so the tenant policies apply to every row it touches.
--
-- batch: [{"org": uuid,
--          "conversations": [{id, app, contact, channel, status, assignee, created, updated, rev}],
--          "tags": [{conv, names: [..]}],        -- snapshots whose tags replace the current ones
--          "messages": [{conv, seq, id, cmid, type, ak, aid, body, meta, at}],
--          "tombstones": [{conv, seq, id, cmid, type, ak, aid, meta, at, dat, dby}],
--          "last": [{id, seq, at, first}],
--          "deleted": [uuid, ...]}, ...]         -- times are epoch milliseconds
CREATE FUNCTION convot_persist_batch(batch jsonb) RETURNS integer
LANGUAGE plpgsql SECURITY INVOKER SET search_path = public AS $$
DECLARE
    o jsonb;
    org uuid;
    applied uuid[];
    tagged uuid[];
    orgs_done integer := 0;
BEGIN
    FOR o IN SELECT value FROM jsonb_array_elements(batch) LOOP
        org := (o->>'org')::uuid;
        PERFORM set_config('convot.org_id', org::text, true);
        orgs_done := orgs_done + 1;

        IF jsonb_array_length(o->'conversations') > 0 THEN
            WITH up AS (
                INSERT INTO conversations (id, org_id, app_id, contact_id, channel, status, assignee_id,
                                           created_at, updated_at, state_rev)
                SELECT u.id, org, u.app, u.contact, u.channel, u.status, u.assignee,
                       to_timestamp(u.created / 1000.0), to_timestamp(u.updated / 1000.0), u.rev
                FROM jsonb_to_recordset(o->'conversations') AS u(id uuid, app uuid, contact uuid, channel text,
                     status text, assignee uuid, created double precision, updated double precision, rev bigint)
                WHERE NOT EXISTS (SELECT 1 FROM deleted_conversations d WHERE d.conversation_id = u.id)
                ORDER BY u.id
                ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, assignee_id = EXCLUDED.assignee_id,
                    updated_at = EXCLUDED.updated_at, state_rev = EXCLUDED.state_rev
                WHERE conversations.state_rev < EXCLUDED.state_rev AND conversations.org_id = EXCLUDED.org_id
                RETURNING id)
            SELECT array_agg(id) INTO applied FROM up;

            SELECT array_agg(t.conv) INTO tagged
            FROM jsonb_to_recordset(o->'tags') AS t(conv uuid, names jsonb)
            WHERE t.conv = ANY(applied);
            IF tagged IS NOT NULL THEN
                INSERT INTO tags (org_id, name)
                SELECT DISTINCT org, n.name
                FROM jsonb_to_recordset(o->'tags') AS t(conv uuid, names jsonb),
                     jsonb_array_elements_text(t.names) AS n(name)
                WHERE t.conv = ANY(tagged)
                ON CONFLICT (org_id, name) DO NOTHING;
                DELETE FROM conversation_tags WHERE org_id = org AND conversation_id = ANY(tagged);
                INSERT INTO conversation_tags (org_id, conversation_id, tag_id)
                SELECT org, t.conv, g.id
                FROM jsonb_to_recordset(o->'tags') AS t(conv uuid, names jsonb),
                     jsonb_array_elements_text(t.names) AS n(name)
                JOIN tags g ON g.org_id = org AND g.name = n.name
                WHERE t.conv = ANY(tagged)
                ON CONFLICT DO NOTHING;
            END IF;
        END IF;

        IF jsonb_array_length(o->'messages') > 0 THEN
            INSERT INTO messages (org_id, conversation_id, seq, id, client_msg_id, type, author_kind, author_id,
                                  body, meta, created_at)
            SELECT org, u.conv, u.seq, u.id, u.cmid, u.type, u.ak, u.aid, u.body, u.meta, to_timestamp(u.at / 1000.0)
            FROM jsonb_to_recordset(o->'messages') AS u(conv uuid, seq bigint, id text, cmid text, type text,
                 ak text, aid text, body text, meta jsonb, at double precision)
            WHERE EXISTS (SELECT 1 FROM conversations c WHERE c.id = u.conv)
            ON CONFLICT DO NOTHING;
        END IF;

        IF jsonb_array_length(o->'tombstones') > 0 THEN
            INSERT INTO messages (org_id, conversation_id, seq, id, client_msg_id, type, author_kind, author_id,
                                  body, meta, created_at, deleted_at, deleted_by)
            SELECT org, u.conv, u.seq, u.id, u.cmid, u.type, u.ak, u.aid, '', u.meta, to_timestamp(u.at / 1000.0),
                   to_timestamp(u.dat / 1000.0), u.dby
            FROM jsonb_to_recordset(o->'tombstones') AS u(conv uuid, seq bigint, id text, cmid text, type text,
                 ak text, aid text, meta jsonb, at double precision, dat double precision, dby uuid)
            WHERE EXISTS (SELECT 1 FROM conversations c WHERE c.id = u.conv)
            ON CONFLICT (conversation_id, seq) DO UPDATE SET body = '', deleted_at = EXCLUDED.deleted_at,
                deleted_by = EXCLUDED.deleted_by;
        END IF;

        IF jsonb_array_length(o->'last') > 0 THEN
            UPDATE conversations c SET last_seq = GREATEST(c.last_seq, u.seq),
                last_message_at = GREATEST(c.last_message_at, to_timestamp(u.at / 1000.0)),
                first_message = COALESCE(c.first_message, u.first),
                updated_at = GREATEST(c.updated_at, to_timestamp(u.at / 1000.0))
            FROM (SELECT * FROM jsonb_to_recordset(o->'last') AS r(id uuid, seq bigint, at double precision, first text)
                  ORDER BY id) AS u
            WHERE c.id = u.id AND c.org_id = org;
        END IF;

        IF jsonb_array_length(o->'deleted') > 0 THEN
            INSERT INTO deleted_conversations (org_id, conversation_id)
            SELECT org, x::uuid FROM jsonb_array_elements_text(o->'deleted') AS x ON CONFLICT DO NOTHING;
            DELETE FROM conversations
            WHERE org_id = org AND id IN (SELECT x::uuid FROM jsonb_array_elements_text(o->'deleted') AS x);
        END IF;
    END LOOP;
    RETURN orgs_done;
END $$;

REVOKE ALL ON FUNCTION convot_persist_batch(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION convot_persist_batch(jsonb) TO convot_service;
