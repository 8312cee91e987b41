"""From stream entries to PostgreSQL rows: a pure plan, then one transaction per batch.

``plan()`` groups a batch by organisation and reduces it to set-based statements; the order
in which entries of one batch (or of two workers' batches) are applied never changes the
result:

* conversation rows are upserted from every entry (a message carries enough to create its
  conversation), and a state snapshot wins only if its ``rev`` is newer;
* messages are inserted ON CONFLICT DO NOTHING (a replayed entry is a no-op);
* a deleted message is upserted as its tombstone, so a late insert of the original is a no-op;
* a deleted conversation leaves a tombstone row that keeps late messages from recreating it.

``write()`` runs the plan in one transaction, switching the row-level-security scope per
organisation (``set_config('convot.org_id', ...)`` is transaction-local).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson

FIRST_MESSAGE_CHARS = 500


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def _uuid_or_none(v: str | None) -> str | None:
    return v or None


@dataclass
class OrgPlan:
    org_id: str
    # conv id -> (app, contact, channel, status, assignee, created, updated, rev)
    conversations: dict[str, tuple] = field(default_factory=dict)
    tags: dict[str, list[str]] = field(default_factory=dict)          # snapshot tags, per conversation
    messages: list[tuple] = field(default_factory=list)
    tombstones: dict[tuple[str, int], tuple] = field(default_factory=dict)
    last: dict[str, list] = field(default_factory=dict)                # conv -> [max seq, max at, first body]
    deleted_conversations: set[str] = field(default_factory=set)
    max_seq: dict[str, int] = field(default_factory=dict)              # for pseq in Redis after commit


def _conversation_row(plan: OrgPlan, conv: str, row: tuple) -> None:
    current = plan.conversations.get(conv)
    if current is None or row[7] > current[7]:
        plan.conversations[conv] = row


def plan(entries: list[tuple[bytes, dict]]) -> dict[str, OrgPlan]:
    """``entries``: (stream id, fields) as read from one or more shard streams."""
    plans: dict[str, OrgPlan] = {}
    for _entry_id, f in entries:
        org = f[b"o"].decode()
        p = plans.get(org)
        if p is None:
            p = plans[org] = OrgPlan(org)
        conv = f[b"c"].decode()
        kind = f[b"t"]
        body = orjson.loads(f[b"f"])
        if kind == b"m":
            m = body["message"]
            created = int(f[b"ct"])
            _conversation_row(p, conv, (_uuid_or_none(f[b"a"].decode()), _uuid_or_none(f[b"k"].decode()),
                                        f[b"h"].decode(), "open", None, _ts(created), _ts(created), 0))
            at = _ts(m["created_at"])
            p.messages.append((conv, m["seq"], m["id"], m["client_msg_id"], m["type"], m["author_kind"],
                               m["author_id"], m["body"], m["meta"], at))
            last = p.last.get(conv)
            first = m["body"][:FIRST_MESSAGE_CHARS] if m["seq"] == 1 else None
            if last is None:
                p.last[conv] = [m["seq"], at, first]
            else:
                if m["seq"] > last[0]:
                    last[0], last[1] = m["seq"], max(last[1], at)
                if first is not None:
                    last[2] = first
            p.max_seq[conv] = max(p.max_seq.get(conv, 0), m["seq"])
        elif kind == b"u":
            c = body["conversation"]
            changes = body["changes"]
            if "deleted" in changes or c.get("deleted"):
                p.deleted_conversations.add(conv)
                continue
            at = _ts(body["at"])
            _conversation_row(p, conv, (c["app_id"], c["contact_id"], c["channel"], c["status"], c["assignee_id"],
                                        _ts(c["created_at"]), at, c["rev"]))
            if plans[org].conversations[conv][7] == c["rev"]:
                p.tags[conv] = list(c["tags"])
            if "message_deleted" in changes:
                t = body["message"]
                p.tombstones[(conv, t["seq"])] = (
                    conv, t["seq"], t["id"], t["client_msg_id"], t["type"], t["author_kind"], t["author_id"],
                    t["meta"], _ts(t["created_at"]), _ts(t.get("deleted_at") or body["at"]), t.get("deleted_by"))
    return plans


_UPSERT_CONVERSATIONS = """
INSERT INTO conversations (id, org_id, app_id, contact_id, channel, status, assignee_id, created_at, updated_at, state_rev)
SELECT u.id, $1, u.app, u.contact, u.channel, u.status, u.assignee, u.created, u.updated, u.rev
FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::uuid[], $8::timestamptz[],
            $9::timestamptz[], $10::bigint[]) AS u(id, app, contact, channel, status, assignee, created, updated, rev)
WHERE NOT EXISTS (SELECT 1 FROM deleted_conversations d WHERE d.conversation_id = u.id)
ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, assignee_id = EXCLUDED.assignee_id,
    updated_at = EXCLUDED.updated_at, state_rev = EXCLUDED.state_rev
WHERE conversations.state_rev < EXCLUDED.state_rev AND conversations.org_id = EXCLUDED.org_id
RETURNING id, state_rev
"""

_ENSURE_TAGS = """
INSERT INTO tags (org_id, name) SELECT $1, n FROM unnest($2::text[]) AS n ON CONFLICT (org_id, name) DO NOTHING
"""

_CLEAR_TAGS = "DELETE FROM conversation_tags WHERE org_id = $1 AND conversation_id = ANY($2::uuid[])"

# Two statements on purpose: a DELETE in a CTE and the INSERT would see the same snapshot,
# and ON CONFLICT would skip the rows that the DELETE then removes.
_ADD_TAGS = """
INSERT INTO conversation_tags (org_id, conversation_id, tag_id)
SELECT $1, u.conv, t.id FROM unnest($2::uuid[], $3::text[]) AS u(conv, name)
JOIN tags t ON t.org_id = $1 AND t.name = u.name
ON CONFLICT DO NOTHING
"""

_INSERT_MESSAGES = """
INSERT INTO messages (org_id, conversation_id, seq, id, client_msg_id, type, author_kind, author_id, body, meta, created_at)
SELECT $1, u.conv, u.seq, u.id, u.cmid, u.type, u.ak, u.aid, u.body, u.meta, u.at
FROM unnest($2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
            $10::jsonb[], $11::timestamptz[]) AS u(conv, seq, id, cmid, type, ak, aid, body, meta, at)
WHERE EXISTS (SELECT 1 FROM conversations c WHERE c.id = u.conv)
ON CONFLICT DO NOTHING
"""

_UPSERT_TOMBSTONES = """
INSERT INTO messages (org_id, conversation_id, seq, id, client_msg_id, type, author_kind, author_id, body, meta,
                      created_at, deleted_at, deleted_by)
SELECT $1, u.conv, u.seq, u.id, u.cmid, u.type, u.ak, u.aid, '', u.meta, u.at, u.dat, u.dby
FROM unnest($2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::jsonb[],
            $10::timestamptz[], $11::timestamptz[], $12::uuid[]) AS u(conv, seq, id, cmid, type, ak, aid, meta, at, dat, dby)
WHERE EXISTS (SELECT 1 FROM conversations c WHERE c.id = u.conv)
ON CONFLICT (conversation_id, seq) DO UPDATE SET body = '', deleted_at = EXCLUDED.deleted_at,
    deleted_by = EXCLUDED.deleted_by
"""

_LAST = """
UPDATE conversations c SET last_seq = GREATEST(c.last_seq, u.seq),
    last_message_at = GREATEST(c.last_message_at, u.at),
    first_message = COALESCE(c.first_message, u.first),
    updated_at = GREATEST(c.updated_at, u.at)
FROM unnest($2::uuid[], $3::bigint[], $4::timestamptz[], $5::text[]) AS u(id, seq, at, first)
WHERE c.id = u.id AND c.org_id = $1
"""

_DELETE_CONVERSATIONS = """
WITH marked AS (INSERT INTO deleted_conversations (org_id, conversation_id)
                SELECT $1, x FROM unnest($2::uuid[]) AS x ON CONFLICT DO NOTHING)
DELETE FROM conversations WHERE org_id = $1 AND id = ANY($2::uuid[])
"""


async def write_org(conn, p: OrgPlan) -> None:
    """All statements of one organisation, inside the caller's transaction."""
    await conn.execute("SELECT set_config('convot.org_id', $1, true)", p.org_id)
    if p.conversations:
        ids = sorted(p.conversations)   # a stable lock order across concurrent workers
        rows = [p.conversations[i] for i in ids]
        applied = await conn.fetch(_UPSERT_CONVERSATIONS, p.org_id, ids, *[list(col) for col in zip(*rows)])
        tag_convs = [str(r["id"]) for r in applied if str(r["id"]) in p.tags]
        if tag_convs:
            names = sorted({t for c in tag_convs for t in p.tags[c]})
            if names:
                await conn.execute(_ENSURE_TAGS, p.org_id, names)
            await conn.execute(_CLEAR_TAGS, p.org_id, tag_convs)
            pairs = [(c, t) for c in tag_convs for t in p.tags[c]]
            if pairs:
                await conn.execute(_ADD_TAGS, p.org_id, [c for c, _ in pairs], [t for _, t in pairs])
    if p.messages:
        await conn.execute(_INSERT_MESSAGES, p.org_id, *[list(col) for col in zip(*p.messages)])
    if p.tombstones:
        rows = list(p.tombstones.values())
        await conn.execute(_UPSERT_TOMBSTONES, p.org_id, *[list(col) for col in zip(*rows)])
    if p.last:
        ids = sorted(p.last)
        await conn.execute(_LAST, p.org_id, ids, [p.last[i][0] for i in ids], [p.last[i][1] for i in ids],
                           [p.last[i][2] for i in ids])
    if p.deleted_conversations:
        await conn.execute(_DELETE_CONVERSATIONS, p.org_id, sorted(p.deleted_conversations))


async def write(pool, plans: dict[str, OrgPlan]) -> None:
    async with pool.acquire() as conn:
        async with conn.transaction():
            for org in sorted(plans):
                await write_org(conn, plans[org])
