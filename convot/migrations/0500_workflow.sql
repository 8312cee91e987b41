-- Inbox workflow (issue 9): auto-assignment, reminders, search.  docs/workflow.md explains it.

-- Rules are edited in place; their order is `position` (UNIQUE per organisation, deferred).
ALTER TABLE assignment_rules ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

------------------------------------------------------------------------------------------
-- One row per conversation the auto-assigner decided on.  The primary key is the claim: of
-- several engine workers that see the same new conversation, one INSERT wins and the others
-- find its decision (and at most re-apply the same one, which changes nothing).  There is no
-- foreign key to conversations: the decision is taken while the conversation may still live
-- only in Redis.  Recent rows also count towards an agent's load until PostgreSQL shows the
-- assignment on the conversation itself (see engine/assignment.py).
------------------------------------------------------------------------------------------
CREATE TABLE auto_assignments (
    org_id          uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    conversation_id uuid PRIMARY KEY,
    rule_id         uuid,                              -- the rule that matched, if any
    strategy        text NOT NULL CHECK (strategy IN ('manual', 'round_robin', 'load_balanced')),
    assignee_id     uuid,                              -- NULL: nobody (skipped, manual, nobody online)
    tags            text[] NOT NULL DEFAULT '{}',
    outcome         text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    applied_at      timestamptz
);
CREATE INDEX auto_assignments_recent ON auto_assignments (org_id, created_at);
ALTER TABLE auto_assignments ENABLE ROW LEVEL SECURITY;
ALTER TABLE auto_assignments FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON auto_assignments USING (org_id = convot_org()) WITH CHECK (org_id = convot_org());
GRANT SELECT, INSERT, UPDATE, DELETE ON auto_assignments TO convot_service;

------------------------------------------------------------------------------------------
-- Reminders: what firing produced, and the indexes the loop and the API read by.
------------------------------------------------------------------------------------------
ALTER TABLE reminders ADD COLUMN message_seq bigint;
ALTER TABLE reminders ADD COLUMN outcome text CHECK (outcome IN ('posted', 'conversation_gone'));
CREATE INDEX reminders_org_due ON reminders (org_id, remind_at) WHERE fired_at IS NULL;
CREATE INDEX reminders_conversation ON reminders (conversation_id);
CREATE INDEX reminders_user ON reminders (org_id, user_id, remind_at);

-- Which organisations have reminders due, and when the next one is due (ids and a time only,
-- never rows: the same job-discovery pattern as 0400_developer_platform.sql).
CREATE POLICY job_discovery ON reminders FOR SELECT TO CURRENT_USER
    USING (convot_scope('maintenance') = 'job_discovery');

CREATE FUNCTION convot_due_reminder_orgs(max_orgs integer) RETURNS SETOF uuid
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE previous text := current_setting('convot.maintenance', true);
BEGIN
    PERFORM set_config('convot.maintenance', 'job_discovery', true);
    RETURN QUERY
        SELECT DISTINCT r.org_id FROM reminders r
        WHERE r.fired_at IS NULL AND r.remind_at <= now()
        LIMIT max_orgs;
    PERFORM set_config('convot.maintenance', COALESCE(previous, ''), true);
END $$;

CREATE FUNCTION convot_next_reminder_at() RETURNS timestamptz
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE previous text := current_setting('convot.maintenance', true);
DECLARE next_at timestamptz;
BEGIN
    PERFORM set_config('convot.maintenance', 'job_discovery', true);
    SELECT min(r.remind_at) INTO next_at FROM reminders r WHERE r.fired_at IS NULL;
    PERFORM set_config('convot.maintenance', COALESCE(previous, ''), true);
    RETURN next_at;
END $$;

REVOKE ALL ON FUNCTION convot_due_reminder_orgs(integer), convot_next_reminder_at() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION convot_due_reminder_orgs(integer), convot_next_reminder_at() TO convot_service;

------------------------------------------------------------------------------------------
-- Search.  Messages already carry `search` (GIN, 'simple' configuration).  Contacts are found
-- by name, email and company through an expression index; the query repeats the expression
-- exactly (admin_api/search.py, CONTACT_DOCUMENT).
------------------------------------------------------------------------------------------
CREATE INDEX contacts_search ON contacts USING gin (
    to_tsvector('simple', coalesce(name, '') || ' ' || coalesce(email::text, '') || ' ' || coalesce(company, '')));
