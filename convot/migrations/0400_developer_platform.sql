-- Admin API II (issue 5): apps, widget sessions, API keys, REST API, webhooks, export, erasure.

-- Apps: when the identity secret was last rotated; last change of the settings.
ALTER TABLE apps ADD COLUMN identity_secret_rotated_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE apps ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- A visitor token handed out by a verified session proves that verification on later
-- refreshes of the same browser (see docs/rest-api.md, "Widget session").
ALTER TABLE visitors ADD COLUMN verified boolean NOT NULL DEFAULT false;

ALTER TABLE contacts ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- A verified identity merges the browser's anonymous contact into the identified one: its
-- conversations move over and the anonymous contact is deleted.  A conversation that was
-- still only in Redis at that moment is persisted later with the anonymous contact's id;
-- the trigger redirects it, so the merge also holds for what was in flight.
CREATE TABLE contact_merges (
    org_id       uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    from_contact uuid NOT NULL,
    into_contact uuid NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    merged_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, from_contact)
);
CREATE INDEX contact_merges_into ON contact_merges (into_contact);
ALTER TABLE contact_merges ENABLE ROW LEVEL SECURITY;
ALTER TABLE contact_merges FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON contact_merges USING (org_id = convot_org()) WITH CHECK (org_id = convot_org());
GRANT SELECT, INSERT, UPDATE, DELETE ON contact_merges TO convot_service;

CREATE FUNCTION convot_redirect_merged_contact() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.contact_id IS NOT NULL THEN
        NEW.contact_id := COALESCE((SELECT m.into_contact FROM contact_merges m
                                    WHERE m.org_id = NEW.org_id AND m.from_contact = NEW.contact_id),
                                   NEW.contact_id);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER redirect_merged_contact BEFORE INSERT ON conversations
    FOR EACH ROW EXECUTE FUNCTION convot_redirect_merged_contact();

-- REST API: conversations newest first with a (created_at, id) cursor.
CREATE INDEX conversations_org_created ON conversations (org_id, created_at DESC, id DESC);

-- Webhooks.
ALTER TABLE webhooks ADD COLUMN description text NOT NULL DEFAULT '' CHECK (length(description) <= 200);
ALTER TABLE webhooks ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
-- A delivery about a contact disappears with the contact (erasure): no webhook about them
-- is sent afterwards, and an enqueue racing the erasure fails on the foreign key.
ALTER TABLE webhook_deliveries ADD COLUMN contact_id uuid REFERENCES contacts(id) ON DELETE CASCADE;
ALTER TABLE webhook_deliveries ADD COLUMN last_attempt_at timestamptz;
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (org_id, webhook_id, created_at DESC, id);
CREATE INDEX webhook_deliveries_contact ON webhook_deliveries (contact_id) WHERE contact_id IS NOT NULL;
CREATE INDEX webhook_deliveries_org_due ON webhook_deliveries (org_id, next_attempt_at) WHERE status = 'pending';

-- Exports: archive metadata and retention.
ALTER TABLE exports ADD COLUMN started_at timestamptz;
ALTER TABLE exports ADD COLUMN expires_at timestamptz;
ALTER TABLE exports ADD COLUMN size_bytes bigint;
ALTER TABLE exports ADD COLUMN sha256 text;
ALTER TABLE exports ADD COLUMN counts jsonb NOT NULL DEFAULT '{}';
ALTER TABLE exports ADD COLUMN attempts integer NOT NULL DEFAULT 0;
CREATE INDEX exports_org ON exports (org_id, created_at DESC);

------------------------------------------------------------------------------------------
-- Job discovery.  Background jobs (webhook delivery, exports, organisation purges) must
-- learn WHICH organisations have work before they can scope themselves to one.  The
-- services' role cannot see across tenants, so each question is a SECURITY DEFINER function
-- owned by the table owner that answers organisation ids only, never rows.  It reads under
-- the `job_discovery` maintenance scope, which these policies admit for the owner alone; the
-- function sets the scope for its query and restores the previous value before returning.
------------------------------------------------------------------------------------------
CREATE POLICY job_discovery ON webhook_deliveries FOR SELECT TO CURRENT_USER
    USING (convot_scope('maintenance') = 'job_discovery');
CREATE POLICY job_discovery ON exports FOR SELECT TO CURRENT_USER
    USING (convot_scope('maintenance') = 'job_discovery');
CREATE POLICY job_discovery ON organisations FOR SELECT TO CURRENT_USER
    USING (convot_scope('maintenance') = 'job_discovery');

-- Organisations with webhook deliveries due now.
CREATE FUNCTION convot_due_webhook_orgs(max_orgs integer) RETURNS SETOF uuid
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE previous text := current_setting('convot.maintenance', true);
BEGIN
    PERFORM set_config('convot.maintenance', 'job_discovery', true);
    RETURN QUERY
        SELECT DISTINCT d.org_id FROM webhook_deliveries d
        WHERE d.status = 'pending' AND d.next_attempt_at <= now()
        LIMIT max_orgs;
    PERFORM set_config('convot.maintenance', COALESCE(previous, ''), true);
END $$;

-- Organisations with export work: pending, stuck running, or a finished archive past expiry.
CREATE FUNCTION convot_export_work_orgs(stale_seconds integer, max_orgs integer) RETURNS SETOF uuid
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE previous text := current_setting('convot.maintenance', true);
BEGIN
    PERFORM set_config('convot.maintenance', 'job_discovery', true);
    RETURN QUERY
        SELECT DISTINCT e.org_id FROM exports e
        WHERE e.status = 'pending'
           OR (e.status = 'running' AND e.started_at < now() - make_interval(secs => stale_seconds))
           OR (e.file_path IS NOT NULL AND e.expires_at <= now())
        LIMIT max_orgs;
    PERFORM set_config('convot.maintenance', COALESCE(previous, ''), true);
END $$;

-- Organisations whose deletion grace period is over.
CREATE FUNCTION convot_due_org_deletions(max_orgs integer) RETURNS SETOF uuid
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE previous text := current_setting('convot.maintenance', true);
BEGIN
    PERFORM set_config('convot.maintenance', 'job_discovery', true);
    RETURN QUERY
        SELECT o.id FROM organisations o
        WHERE o.deletion_scheduled_at IS NOT NULL AND o.deletion_scheduled_at <= now()
        ORDER BY o.deletion_scheduled_at
        LIMIT max_orgs;
    PERFORM set_config('convot.maintenance', COALESCE(previous, ''), true);
END $$;

REVOKE ALL ON FUNCTION convot_due_webhook_orgs(integer), convot_export_work_orgs(integer, integer),
    convot_due_org_deletions(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION convot_due_webhook_orgs(integer), convot_export_work_orgs(integer, integer),
    convot_due_org_deletions(integer) TO convot_service;
