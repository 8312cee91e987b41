-- Admin API (issue 4): accounts, invites, key rotation.

-- One pending invite per (organisation, email); an expired one is revoked before re-inviting.
CREATE UNIQUE INDEX invites_pending_email ON invites (org_id, email)
    WHERE accepted_at IS NULL AND revoked_at IS NULL;

-- Audit log filters (action / target / actor within an organisation, newest first).
CREATE INDEX audit_log_org_action ON audit_log (org_id, action, id DESC);
CREATE INDEX audit_log_org_actor ON audit_log (org_id, actor_id, id DESC);

-- Sessions: list a user's live sessions; expire old ones.
CREATE INDEX user_sessions_expires ON user_sessions (expires_at) WHERE revoked_at IS NULL;

-- Password reset / verification tokens of a user (used to spend all of them at once).
CREATE INDEX auth_tokens_user ON auth_tokens (user_id, purpose) WHERE used_at IS NULL;

-- `convot keys rotate` runs as the table owner (this migration's role, never the services'
-- role) and must reach the encrypted columns of every organisation.  These policies admit it
-- only when it also states the maintenance scope in its transaction.
CREATE POLICY key_rotation ON apps TO CURRENT_USER
    USING (convot_scope('maintenance') = 'key_rotation')
    WITH CHECK (convot_scope('maintenance') = 'key_rotation');
CREATE POLICY key_rotation ON webhooks TO CURRENT_USER
    USING (convot_scope('maintenance') = 'key_rotation')
    WITH CHECK (convot_scope('maintenance') = 'key_rotation');
CREATE POLICY key_rotation ON shopify_connections TO CURRENT_USER
    USING (convot_scope('maintenance') = 'key_rotation')
    WITH CHECK (convot_scope('maintenance') = 'key_rotation');
