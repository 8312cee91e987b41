-- Billing through Stripe (issue 8).  admin_api/billing/state.py orders out-of-order webhook
-- events by (created, rank) of the event: the status follows the newest event that proposes
-- one (state_event_created from 0001, its rank here); the subscription object's own fields
-- (plan, period end, cancel flag) follow the newest subscription event (object_event_*).
ALTER TABLE billing_accounts
    ADD COLUMN state_event_rank     smallint NOT NULL DEFAULT 0,
    ADD COLUMN object_event_created bigint NOT NULL DEFAULT 0,
    ADD COLUMN object_event_rank    smallint NOT NULL DEFAULT 0,
    ADD COLUMN cancel_at_period_end boolean NOT NULL DEFAULT false;
