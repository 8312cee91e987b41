-- Webhook dispatch (engine/webhooks.py) reads every shard-stream entry.  Most organisations
-- have no webhook endpoint; building their events and asking PostgreSQL per organisation
-- whether anyone subscribes cost two round trips per organisation per batch.  This function
-- answers the question for a whole batch in one round trip: which of these organisations
-- have at least one enabled endpoint.  Like the other job-discovery functions (0400) it is
-- owned by the table owner, answers organisation ids only, and reads under the
-- `job_discovery` maintenance scope, restored before it returns.
CREATE POLICY job_discovery ON webhooks FOR SELECT TO CURRENT_USER
    USING (convot_scope('maintenance') = 'job_discovery');

CREATE FUNCTION convot_webhook_subscribed_orgs(orgs uuid[]) RETURNS SETOF uuid
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE previous text := current_setting('convot.maintenance', true);
BEGIN
    PERFORM set_config('convot.maintenance', 'job_discovery', true);
    RETURN QUERY
        SELECT DISTINCT w.org_id FROM webhooks w WHERE w.org_id = ANY(orgs) AND w.enabled;
    PERFORM set_config('convot.maintenance', COALESCE(previous, ''), true);
END $$;

REVOKE ALL ON FUNCTION convot_webhook_subscribed_orgs(uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION convot_webhook_subscribed_orgs(uuid[]) TO convot_service;
