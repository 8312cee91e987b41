-- Shopify Partner API sync (issue 8): scheduling, the derived merchant detail, event retention.
-- docs/revenue.md explains every column.

-- Scheduling: a connection is due when next_sync_at has passed; a run in progress holds the
-- row as 'syncing' since sync_started_at (a lease: a crashed worker's run is taken over).
ALTER TABLE shopify_connections
    ADD COLUMN next_sync_at    timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN sync_started_at timestamptz;
CREATE INDEX shopify_connections_due ON shopify_connections (next_sync_at) WHERE status <> 'stopped';

-- The merchant model (engine/shopify/model.py) keeps, beside the columns of 0001:
--   timeline: [[time, status, mrr, currency], ...] changes of the last 12 months (dashboard);
--   baseline / baseline_until: the lifecycle folded from events older than the retention,
--   which are then deleted (so lifecycle events are kept 12 months, the state forever).
ALTER TABLE shopify_merchants
    ADD COLUMN billing_interval     text,
    ADD COLUMN charge_id            text,
    ADD COLUMN trial_ends_at        timestamptz,
    ADD COLUMN lifetime_by_currency jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN timeline             jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN baseline             jsonb,
    ADD COLUMN baseline_until       timestamptz;
CREATE INDEX shopify_merchants_trial ON shopify_merchants (org_id, trial_ends_at) WHERE status = 'trialing';
CREATE INDEX shopify_merchants_app ON shopify_merchants (org_id, app_gid);
CREATE INDEX shopify_events_org_time ON shopify_events (org_id, occurred_at);

-- The scheduler must find due connections across organisations.  It does so only through
-- the two functions below, which run as the table owner (this migration's role) and return
-- organisation ids and counts, never tokens.  The policy admits the owner alone, and only
-- while a function states the scheduler scope.
CREATE POLICY shopify_scheduler ON shopify_connections FOR SELECT TO CURRENT_USER
    USING (convot_scope('maintenance') = 'shopify_scheduler');

CREATE FUNCTION shopify_due_connections(max_rows integer, lease_seconds integer)
RETURNS TABLE (org_id uuid)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM set_config('convot.maintenance', 'shopify_scheduler', true);
    RETURN QUERY
        SELECT c.org_id FROM shopify_connections c
        WHERE (c.status = 'active' AND c.next_sync_at <= now())
           OR (c.status = 'syncing' AND c.sync_started_at < now() - make_interval(secs => lease_seconds))
        ORDER BY c.next_sync_at
        LIMIT max_rows;
    PERFORM set_config('convot.maintenance', '', true);
END $$;

CREATE FUNCTION shopify_connection_counts()
RETURNS TABLE (status text, connections bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM set_config('convot.maintenance', 'shopify_scheduler', true);
    RETURN QUERY SELECT c.status, count(*) FROM shopify_connections c GROUP BY c.status;
    PERFORM set_config('convot.maintenance', '', true);
END $$;

REVOKE ALL ON FUNCTION shopify_due_connections(integer, integer), shopify_connection_counts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shopify_due_connections(integer, integer), shopify_connection_counts() TO convot_service;
