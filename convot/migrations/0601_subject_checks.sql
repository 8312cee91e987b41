-- Gateway authentication (gateway/server.py): after the signature and the Redis revocation
-- records, a socket's subject is checked against PostgreSQL (a shopper's contact and app still
-- exist; a member still belongs to the organisation with the token's role and version).  Done
-- one transaction per socket, a connection storm paid BEGIN, set_config, SELECT, COMMIT and the
-- pool's reset per socket.  This function checks every socket that authenticated during one
-- event-loop turn in one round trip.
--
-- SECURITY INVOKER, like convot_persist_batch: it runs as the services' role and switches the
-- row-level-security scope per check with set_config('convot.org_id', ..., true), so the tenant
-- policies apply to every row it reads.  It reads and answers only what the caller already
-- holds a signed token for.
--
-- checks: [{"org": uuid, "role": "shopper" | member role, "sub": uuid, "contact": uuid,
--           "app": uuid, "version": int}, ...]
-- returns one entry per check, in order: NULL (fine), 'wrong_organisation' or 'stale_token'.
CREATE FUNCTION convot_subject_problems(checks jsonb) RETURNS text[]
LANGUAGE plpgsql SECURITY INVOKER SET search_path = public AS $$
DECLARE
    c jsonb;
    org uuid;
    found_role text;
    found_version integer;
    ok boolean;
    answers text[] := '{}';
BEGIN
    FOR c IN SELECT value FROM jsonb_array_elements(checks) LOOP
        org := (c->>'org')::uuid;
        PERFORM set_config('convot.org_id', org::text, true);
        IF c->>'role' = 'shopper' THEN
            SELECT EXISTS (SELECT 1 FROM contacts WHERE org_id = org AND id = (c->>'contact')::uuid)
               AND EXISTS (SELECT 1 FROM apps WHERE org_id = org AND id = (c->>'app')::uuid) INTO ok;
            answers := array_append(answers, CASE WHEN ok THEN NULL ELSE 'wrong_organisation' END);
        ELSE
            SELECT m.role, m.token_version INTO found_role, found_version
            FROM members m WHERE m.org_id = org AND m.user_id = (c->>'sub')::uuid;
            IF NOT FOUND THEN
                answers := array_append(answers, 'wrong_organisation'::text);
            ELSIF found_role IS DISTINCT FROM c->>'role'
                  OR found_version IS DISTINCT FROM (c->>'version')::integer THEN
                answers := array_append(answers, 'stale_token'::text);
            ELSE
                answers := array_append(answers, NULL::text);
            END IF;
        END IF;
    END LOOP;
    PERFORM set_config('convot.org_id', '', true);
    RETURN answers;
END $$;

REVOKE ALL ON FUNCTION convot_subject_problems(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION convot_subject_problems(jsonb) TO convot_service;
