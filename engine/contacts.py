"""Contacts in Redis: moving live conversations when an anonymous visitor proves who they are.

A verified widget session merges the browser's unproven contact into the identified one
(admin_api/widget_session.py).  PostgreSQL is updated in the session's transaction; this
moves the conversations' live state (``contact_merge.lua``): the meta's contact changes, so the
new contact's token may write into them, and a ``conversation.update`` with change
``contact`` carries the new snapshot to every socket and to the workers.
"""

from __future__ import annotations

from engine import keys
from engine.erasure import lua_script, run_script

CONTACT_MERGE = lua_script("contact_merge", with_lib=True)
MAX_ARGS = 5000


async def move_live_conversations(redis, shards: int, org_id, from_contact, to_contact, conversations,
                                  actor: tuple[str, str | None] = ("system", None)) -> int:
    """Reassign the live conversations of ``from_contact`` to ``to_contact``; returns how many
    were live in Redis (the others exist only in PostgreSQL and need nothing here)."""
    import orjson

    org = str(org_id)
    ids = sorted(str(c) for c in conversations)
    if not ids:
        return 0
    stream = keys.stream(keys.shard_of(org, shards))
    actor_json = orjson.dumps({"kind": actor[0], "id": actor[1]})
    moved = 0
    for i in range(0, len(ids), MAX_ARGS):
        part = ids[i:i + MAX_ARGS]
        moved += int(await run_script(redis, CONTACT_MERGE, [stream],
                                [org, str(from_contact), str(to_contact), actor_json, len(part), *part]))
    return moved
