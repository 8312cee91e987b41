-- Convot data model, version 1.  Runs as the table owner (never as the services' role).
-- docs/data-model.md explains every table.  Rules:
--   * every tenant table has org_id and row-level security, ENABLEd and FORCEd;
--   * the services connect as a member of convot_service, which owns nothing and has no
--     BYPASSRLS, so the policies below are the only way to any tenant row;
--   * a request states its scope in transaction-local settings (convot.org_id, and for the few
--     pre-tenant lookups convot.user_id, convot.app_key, convot.api_key_id, convot.invite_hash);
--     a policy admits exactly the rows that match.  Unset settings admit nothing.

CREATE EXTENSION IF NOT EXISTS citext;

-- Scope helpers: NULL when unset or empty, so a comparison admits no row.
CREATE FUNCTION convot_org() RETURNS uuid LANGUAGE sql STABLE PARALLEL SAFE AS
$$ SELECT NULLIF(current_setting('convot.org_id', true), '')::uuid $$;
CREATE FUNCTION convot_user() RETURNS uuid LANGUAGE sql STABLE PARALLEL SAFE AS
$$ SELECT NULLIF(current_setting('convot.user_id', true), '')::uuid $$;
CREATE FUNCTION convot_scope(name text) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS
$$ SELECT NULLIF(current_setting('convot.' || name, true), '') $$;

------------------------------------------------------------------------------------------
-- Global tables (no tenant): people and their credentials.  A user may belong to several
-- organisations, so accounts live outside any one of them.
------------------------------------------------------------------------------------------
CREATE TABLE users (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email             citext NOT NULL UNIQUE,
    email_verified_at timestamptz,
    password_hash     text NOT NULL,
    name              text NOT NULL DEFAULT '',
    avatar_url        text,
    totp_secret_enc   bytea,                 -- AES-GCM, see convot/crypto.py
    totp_enabled_at   timestamptz,
    totp_last_step    bigint,                -- a TOTP step is accepted once
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_sessions (
    id            text PRIMARY KEY,          -- SHA-256 of the cookie value, never the value
    user_id       uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_hash     text NOT NULL,
    mfa_verified  boolean NOT NULL DEFAULT false,
    reauth_at     timestamptz,               -- last re-authentication, for sensitive changes
    ip            inet,
    user_agent    text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz
);
CREATE INDEX user_sessions_user ON user_sessions (user_id) WHERE revoked_at IS NULL;

CREATE TABLE recovery_codes (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id   uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash text NOT NULL,
    used_at   timestamptz
);
CREATE INDEX recovery_codes_user ON recovery_codes (user_id);

-- Single-use expiring tokens (email verification, password reset, email change).
CREATE TABLE auth_tokens (
    token_hash text PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose    text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password', 'change_email')),
    payload    jsonb NOT NULL DEFAULT '{}',
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Authentication events of a user (append-only: the services may only INSERT and SELECT).
CREATE TABLE auth_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    uuid REFERENCES users(id) ON DELETE SET NULL,
    event      text NOT NULL,
    success    boolean NOT NULL,
    ip         inet,
    user_agent text NOT NULL DEFAULT '',
    details    jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_events_user ON auth_events (user_id, created_at DESC);

------------------------------------------------------------------------------------------
-- Tenant tables.
------------------------------------------------------------------------------------------
CREATE TABLE organisations (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id                uuid GENERATED ALWAYS AS (id) STORED UNIQUE,
    name                  text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    super_owner_id        uuid NOT NULL REFERENCES users(id),
    require_mfa           boolean NOT NULL DEFAULT false,
    assignment_strategy   text NOT NULL DEFAULT 'manual'
                          CHECK (assignment_strategy IN ('manual', 'round_robin', 'load_balanced')),
    round_robin_cursor    bigint NOT NULL DEFAULT 0,
    timezone              text NOT NULL DEFAULT 'UTC',
    business_hours        jsonb NOT NULL DEFAULT '[]',   -- [{"day":0-6,"start":"09:00","end":"17:00"}]
    plan                  text NOT NULL DEFAULT 'free',
    deletion_scheduled_at timestamptz,                   -- hard delete after this (grace period)
    created_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE members (
    org_id       uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role         text NOT NULL CHECK (role IN ('owner', 'admin', 'agent')),
    overrides    jsonb NOT NULL DEFAULT '{}',   -- {"revenue": true|false, "reports": true|false}
    availability text NOT NULL DEFAULT 'offline' CHECK (availability IN ('online', 'busy', 'offline')),
    token_version integer NOT NULL DEFAULT 0,   -- bumped on role change: older gateway tokens die
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX members_user ON members (user_id);

CREATE TABLE invites (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id      uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    email       citext NOT NULL,
    role        text NOT NULL CHECK (role IN ('owner', 'admin', 'agent')),
    token_hash  text NOT NULL UNIQUE,
    invited_by  uuid REFERENCES users(id) ON DELETE SET NULL,
    expires_at  timestamptz NOT NULL,
    accepted_at timestamptz,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invites_org ON invites (org_id) WHERE accepted_at IS NULL AND revoked_at IS NULL;

CREATE TABLE apps (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id               uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    public_key           text NOT NULL UNIQUE CHECK (public_key LIKE 'app\_%'),
    name                 text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    identity_secret_enc  bytea NOT NULL,
    allowed_origins      text[] NOT NULL DEFAULT '{}',
    require_verification boolean NOT NULL DEFAULT false,
    settings             jsonb NOT NULL DEFAULT '{}',  -- colours, greeting, default section, email prompt
    shopify_app_gid      text,                         -- links to Partner API data
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX apps_org ON apps (org_id);

CREATE TABLE contacts (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id         uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    external_id    text,
    email          citext,
    name           text,
    company        text,
    phone          text,
    avatar_url     text,
    custom_data    jsonb NOT NULL DEFAULT '{}',
    verified       boolean NOT NULL DEFAULT false,  -- identity proven by user_hash
    shop           text,                            -- myshopify domain
    shop_verified  boolean NOT NULL DEFAULT false,  -- proven by shop_hash; only then revenue data
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX contacts_external ON contacts (org_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX contacts_email ON contacts (org_id, email) WHERE email IS NOT NULL;

-- A browser's long-lived visitor token (hashed) -> the contact it belongs to.
CREATE TABLE visitors (
    token_hash   text PRIMARY KEY,
    org_id       uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    app_id       uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    contact_id   uuid NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX visitors_contact ON visitors (contact_id);

CREATE TABLE conversations (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id          uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    app_id          uuid REFERENCES apps(id) ON DELETE SET NULL,
    contact_id      uuid REFERENCES contacts(id) ON DELETE CASCADE,
    channel         text NOT NULL DEFAULT 'widget' CHECK (channel IN ('widget', 'api', 'email')),
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'pending', 'resolved')),
    assignee_id     uuid REFERENCES users(id) ON DELETE SET NULL,
    last_seq        bigint NOT NULL DEFAULT 0,      -- highest persisted sequence number
    last_message_at timestamptz,
    first_message   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversations_org_status ON conversations (org_id, status, last_message_at DESC);
CREATE INDEX conversations_assignee ON conversations (org_id, assignee_id) WHERE status <> 'resolved';
CREATE INDEX conversations_contact ON conversations (contact_id);

-- Messages carry a per-conversation sequence number assigned atomically in Redis
-- (engine/lua/append.lua); (conversation_id, seq) is the total order everyone sees.
CREATE TABLE messages (
    org_id          uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    conversation_id uuid NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq             bigint NOT NULL,
    id              text NOT NULL,                   -- server message id (from the router)
    client_msg_id   text,                            -- idempotency key chosen by the sender
    type            text NOT NULL CHECK (type IN ('incoming', 'outgoing', 'note', 'activity')),
    author_kind     text NOT NULL CHECK (author_kind IN ('contact', 'member', 'system', 'api')),
    author_id       text,
    body            text NOT NULL,
    meta            jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL,
    deleted_at      timestamptz,
    deleted_by      uuid,
    search          tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED,
    PRIMARY KEY (conversation_id, seq),
    UNIQUE (org_id, id)
);
CREATE INDEX messages_search ON messages USING gin (search);
CREATE INDEX messages_org_created ON messages (org_id, created_at);

CREATE TABLE tags (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id     uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    name       text NOT NULL CHECK (name ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(name) <= 64),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, name)
);

CREATE TABLE conversation_tags (
    org_id          uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    conversation_id uuid NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    tag_id          uuid NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
    PRIMARY KEY (conversation_id, tag_id)
);

CREATE TABLE contact_tags (
    org_id     uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    contact_id uuid NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    tag_id     uuid NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
    PRIMARY KEY (contact_id, tag_id)
);

-- @mentions and reminders reach members as notifications.
CREATE TABLE notifications (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('mention', 'reminder', 'assignment')),
    conversation_id uuid REFERENCES conversations(id) ON DELETE CASCADE,
    message_seq     bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    read_at         timestamptz
);
CREATE INDEX notifications_user ON notifications (org_id, user_id, created_at DESC);

CREATE TABLE reminders (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id          uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    conversation_id uuid NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    remind_at       timestamptz NOT NULL,
    note            text NOT NULL DEFAULT '',
    fired_at        timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reminders_due ON reminders (remind_at) WHERE fired_at IS NULL;

CREATE TABLE assignment_rules (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id     uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    position   integer NOT NULL,
    name       text NOT NULL,
    conditions jsonb NOT NULL DEFAULT '[]',
    actions    jsonb NOT NULL DEFAULT '[]',
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, position) DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE api_keys (
    id           text PRIMARY KEY,               -- the public <id> of ck_<id>:<secret>
    org_id       uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    name         text NOT NULL,
    secret_hash  text NOT NULL,                  -- SHA-256 of the high-entropy secret
    scopes       text[] NOT NULL,
    created_by   uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_org ON api_keys (org_id);

CREATE TABLE webhooks (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id     uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    url        text NOT NULL,
    secret_enc bytea NOT NULL,
    events     text[] NOT NULL,
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_org ON webhooks (org_id);

CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id          uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    webhook_id      uuid NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event           text NOT NULL,
    event_id        text NOT NULL,
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

-- Administrative actions (append-only: the services may only INSERT and SELECT).
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    actor_id    uuid,
    actor_kind  text NOT NULL CHECK (actor_kind IN ('user', 'api_key', 'system')),
    action      text NOT NULL,
    target_type text,
    target_id   text,
    ip          inet,
    user_agent  text NOT NULL DEFAULT '',
    details     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_org ON audit_log (org_id, created_at DESC);

CREATE TABLE exports (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id       uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    requested_by uuid REFERENCES users(id) ON DELETE SET NULL,
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
    file_path    text,
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);

-- Shopify Partner API (read-only copy of a Partner organisation's revenue data).
CREATE TABLE shopify_connections (
    org_id               uuid PRIMARY KEY REFERENCES organisations(id) ON DELETE CASCADE,
    partner_org_id       text NOT NULL,
    token_enc            bytea NOT NULL,
    token_last4          text NOT NULL,
    status               text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'syncing', 'stopped')),
    sync_state           jsonb NOT NULL DEFAULT '{}',   -- cursors / last seen times per feed
    consecutive_failures integer NOT NULL DEFAULT 0,
    last_error           text,
    last_sync_at         timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE shopify_apps (
    org_id  uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    app_gid text NOT NULL,
    name    text NOT NULL,
    PRIMARY KEY (org_id, app_gid)
);

CREATE TABLE shopify_transactions (
    org_id           uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    id               text NOT NULL,
    type             text NOT NULL,
    app_gid          text,
    shop_domain      text,
    created_at       timestamptz NOT NULL,
    gross_amount     numeric(20, 4),
    net_amount       numeric(20, 4),
    currency         char(3),
    billing_interval text,
    raw              jsonb NOT NULL,
    PRIMARY KEY (org_id, id)
);
CREATE INDEX shopify_transactions_shop ON shopify_transactions (org_id, shop_domain, app_gid, created_at);

CREATE TABLE shopify_events (
    org_id      uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    id          text NOT NULL,                 -- stable hash of (type, app, shop, occurredAt, charge)
    type        text NOT NULL,
    app_gid     text NOT NULL,
    shop_domain text NOT NULL,
    occurred_at timestamptz NOT NULL,
    raw         jsonb NOT NULL,
    PRIMARY KEY (org_id, id)
);
CREATE INDEX shopify_events_shop ON shopify_events (org_id, shop_domain, app_gid, occurred_at);

CREATE TABLE shopify_merchants (
    org_id         uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    shop_domain    text NOT NULL,
    app_gid        text NOT NULL,
    plan           text,
    status         text NOT NULL CHECK (status IN ('trialing', 'active', 'frozen', 'churned')),
    mrr_amount     numeric(20, 4) NOT NULL DEFAULT 0,
    currency       char(3) NOT NULL DEFAULT 'USD',
    lifetime_gross numeric(20, 4) NOT NULL DEFAULT 0,
    installed_at   timestamptz,
    uninstalled_at timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, shop_domain, app_gid)
);

-- Billing of Convot itself (Stripe).
CREATE TABLE billing_accounts (
    org_id                 uuid PRIMARY KEY REFERENCES organisations(id) ON DELETE CASCADE,
    stripe_customer_id     text UNIQUE,
    stripe_subscription_id text,
    plan                   text NOT NULL DEFAULT 'free',
    status                 text NOT NULL DEFAULT 'none',
    current_period_end     timestamptz,
    state_event_created    bigint NOT NULL DEFAULT 0,  -- Stripe `created` of the event that set this
    updated_at             timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stripe_events (
    id           text PRIMARY KEY,
    org_id       uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    type         text NOT NULL,
    created      bigint NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

------------------------------------------------------------------------------------------
-- Row-level security: enabled and forced on every table that has org_id.
------------------------------------------------------------------------------------------
DO $$
DECLARE t text;
BEGIN
    FOR t IN SELECT c.relname FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped
             WHERE n.nspname = current_schema() AND c.relkind = 'r'
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant ON %I USING (org_id = convot_org()) WITH CHECK (org_id = convot_org())', t);
    END LOOP;
END $$;

-- Pre-tenant lookups, each admitting only the rows its own scope names (read-only):
-- a user sees their own memberships and those organisations (to pick one);
CREATE POLICY own_membership ON members FOR SELECT USING (user_id = convot_user());
CREATE POLICY own_organisations ON organisations FOR SELECT
    USING (id IN (SELECT m.org_id FROM members m WHERE m.user_id = convot_user()));
-- the widget finds its app by public key; the REST API its key by id; an invitee the invite.
CREATE POLICY by_public_key ON apps FOR SELECT USING (public_key = convot_scope('app_key'));
CREATE POLICY by_key_id ON api_keys FOR SELECT USING (id = convot_scope('api_key_id'));
CREATE POLICY by_token ON invites FOR SELECT USING (token_hash = convot_scope('invite_hash'));
-- Stripe webhooks name the customer, not the organisation.
CREATE POLICY by_customer ON billing_accounts FOR SELECT
    USING (stripe_customer_id = convot_scope('stripe_customer'));

------------------------------------------------------------------------------------------
-- Privileges of the services' role.
------------------------------------------------------------------------------------------
GRANT USAGE ON SCHEMA public TO convot_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO convot_service;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log, auth_events FROM convot_service;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO convot_service;
GRANT EXECUTE ON FUNCTION convot_org(), convot_user(), convot_scope(text) TO convot_service;
