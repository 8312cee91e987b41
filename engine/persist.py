"""From stream entries to PostgreSQL rows: a pure plan, then one round trip per batch.

``plan()`` groups a batch by organisation and reduces it to set-based rows; the order in
which entries of one batch (or of two workers' batches) are applied never changes the
result:

* conversation rows are upserted from every entry (a message carries enough to create its
  conversation), and a state snapshot wins only if its ``rev`` is newer;
* messages are inserted ON CONFLICT DO NOTHING (a replayed entry is a no-op);
* a deleted message is upserted as its tombstone, so a late insert of the original is a no-op;
* a deleted conversation leaves a tombstone row that keeps late messages from recreating it.

``write()`` sends the whole plan to ``convot_persist_batch(jsonb)`` (migration 0101) in one
transaction; the function switches the row-level-security scope per organisation
(``set_config('convot.org_id', ..., true)``) and runs the statements server-side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

FIRST_MESSAGE_CHARS = 500


@dataclass
class OrgPlan:
    org_id: str
    conversations: dict[str, dict] = field(default_factory=dict)     # conv -> row (highest rev wins)
    tags: dict[str, list[str]] = field(default_factory=dict)          # snapshot tags, per conversation
    messages: list[dict] = field(default_factory=list)
    tombstones: dict[tuple[str, int], dict] = field(default_factory=dict)
    last: dict[str, dict] = field(default_factory=dict)                # conv -> {seq, at, first}
    deleted_conversations: set[str] = field(default_factory=set)
    max_seq: dict[str, int] = field(default_factory=dict)              # for pseq in Redis after commit

    def payload(self) -> dict:
        return {"org": self.org_id, "conversations": [self.conversations[c] for c in sorted(self.conversations)],
                "tags": [{"conv": c, "names": names} for c, names in self.tags.items()],
                "messages": self.messages, "tombstones": list(self.tombstones.values()),
                "last": [dict(self.last[c], id=c) for c in sorted(self.last)],
                "deleted": sorted(self.deleted_conversations)}


def _conversation_row(plan: OrgPlan, conv: str, row: dict) -> bool:
    current = plan.conversations.get(conv)
    if current is None or row["rev"] > current["rev"]:
        plan.conversations[conv] = row
        return True
    return False


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
            _conversation_row(p, conv, {"id": conv, "app": f[b"a"].decode() or None, "contact": f[b"k"].decode() or None,
                                        "channel": f[b"h"].decode(), "status": "open", "assignee": None,
                                        "created": created, "updated": created, "rev": 0})
            seq, at = m["seq"], m["created_at"]
            p.messages.append({"conv": conv, "seq": seq, "id": m["id"], "cmid": m["client_msg_id"], "type": m["type"],
                               "ak": m["author_kind"], "aid": m["author_id"], "body": m["body"], "meta": m["meta"],
                               "at": at})
            last = p.last.get(conv)
            first = m["body"][:FIRST_MESSAGE_CHARS] if seq == 1 else None
            if last is None:
                p.last[conv] = {"seq": seq, "at": at, "first": first}
            else:
                if seq > last["seq"]:
                    last["seq"], last["at"] = seq, max(last["at"], at)
                if first is not None:
                    last["first"] = first
            p.max_seq[conv] = max(p.max_seq.get(conv, 0), seq)
        elif kind == b"u":
            c = body["conversation"]
            changes = body["changes"]
            if "deleted" in changes or c.get("deleted"):
                p.deleted_conversations.add(conv)
                continue
            if _conversation_row(p, conv, {"id": conv, "app": c["app_id"], "contact": c["contact_id"],
                                           "channel": c["channel"], "status": c["status"],
                                           "assignee": c["assignee_id"], "created": c["created_at"],
                                           "updated": body["at"], "rev": c["rev"]}):
                p.tags[conv] = list(c["tags"])
            if "message_deleted" in changes:
                t = body["message"]
                p.tombstones[(conv, t["seq"])] = {
                    "conv": conv, "seq": t["seq"], "id": t["id"], "cmid": t["client_msg_id"], "type": t["type"],
                    "ak": t["author_kind"], "aid": t["author_id"], "meta": t["meta"], "at": t["created_at"],
                    "dat": t.get("deleted_at") or body["at"], "dby": t.get("deleted_by")}
    return plans


async def write(pool, plans: dict[str, OrgPlan]) -> None:
    """One transaction, one round trip: every organisation of the batch."""
    payload = [plans[org].payload() for org in sorted(plans)]
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SELECT convot_persist_batch($1::jsonb)", payload)
