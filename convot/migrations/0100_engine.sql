-- Real-time engine (issue 3): what the persisting workers need beyond the base schema.
--
-- Workers of one consumer group may commit entries of a shard out of stream order (each
-- takes a share of the entries).  Two things keep the result equal to the stream's order:
--   * conversations.state_rev: every state change in Redis bumps the conversation's rev and
--     carries a full snapshot; a snapshot is applied only if its rev is newer;
--   * deleted_conversations: a tombstone, so a message persisted after its conversation's
--     deletion cannot bring the conversation back.
ALTER TABLE conversations ADD COLUMN state_rev bigint NOT NULL DEFAULT 0;

CREATE TABLE deleted_conversations (
    org_id          uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    conversation_id uuid PRIMARY KEY,
    deleted_at      timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE deleted_conversations ENABLE ROW LEVEL SECURITY;
ALTER TABLE deleted_conversations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON deleted_conversations USING (org_id = convot_org()) WITH CHECK (org_id = convot_org());
GRANT SELECT, INSERT, UPDATE, DELETE ON deleted_conversations TO convot_service;

-- Resume and history read a conversation's messages by sequence.
-- (The primary key (conversation_id, seq) already serves them.)
