"""Erasure: a contact (right to be forgotten) or a whole organisation, from PostgreSQL AND Redis.

Contact (``erase_contact``), in this order, so nothing can bring the data back:

1. revoke: ``contact_erased`` on the control channel closes the contact's sockets and kills
   their tokens (gateways refuse them from now on);
2. close the contact's live conversations in Redis (``erase_conversations.lua`` 'close'):
   appends, updates and resume answer not_found, and hydration cannot recreate them;
3. PostgreSQL, one transaction: tombstone the conversations in ``deleted_conversations`` (the
   persisting workers then never write them again), delete the contact — which cascades to
   its conversations, messages, visitor tokens, tags, merges and pending webhook deliveries;
4. Redis: delete every entry of theirs from the shard stream and its dead-letter stream
   (``erase_entries.lua``, bounded chunks; conversations only Redis knew are found on the way
   and tombstoned too), their conversations' meta and recent lists, and their idempotency keys.

Organisation (``purge_organisation``, after the grace period of a scheduled deletion): revoke
every token of the organisation, close its conversations, delete the organisation row
(everything cascades), then remove every stream entry, conversation key and export archive of
it.  ``run_org_purges`` runs in the engine workers and purges what is due.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from convot.config import Config
from convot.db import scoped
from engine import keys
from engine.scripts import LUA_DIR, Script

log = logging.getLogger("convot.engine.erasure")

CHUNK = 1000                 # stream entries examined per script call
SCAN_COUNT = 1000
MAX_ARGS = 5000              # conversation ids per erase_conversations.lua call


def lua_script(name: str, with_lib: bool) -> Script:
    source = (LUA_DIR / f"{name}.lua").read_text()
    if with_lib:
        source = (LUA_DIR / "lib.lua").read_text() + "\n" + source
    return Script(name, source)


ERASE_ENTRIES = lua_script("erase_entries", with_lib=False)
ERASE_CONVERSATIONS = lua_script("erase_conversations", with_lib=True)


async def run_script(redis, script: Script, keys_: list[str], args: list) -> object:
    from redis.exceptions import NoScriptError

    try:
        return await redis.evalsha(script.sha, len(keys_), *keys_, *args)
    except NoScriptError:
        await redis.script_load(script.source)
        return await redis.evalsha(script.sha, len(keys_), *keys_, *args)


@dataclass
class ErasureReport:
    conversations: set[str] = field(default_factory=set)
    stream_entries: int = 0
    dead_letters: int = 0
    redis_keys: int = 0
    rows: int = 0


# ---- Redis -------------------------------------------------------------------------------------

async def close_conversations(redis, shard: int, org_id: str, conversations, mode: str) -> int:
    ids = sorted(conversations)
    touched = 0
    for i in range(0, len(ids), MAX_ARGS):
        part = ids[i:i + MAX_ARGS]
        touched += int(await run_script(redis, ERASE_CONVERSATIONS, [keys.stream(shard)], [org_id, mode, len(part), *part]))
    return touched


async def erase_stream_entries(redis, stream: str, org_id: str, contacts=(), conversations=()) -> tuple[int, set[str]]:
    """Delete the organisation's entries (all, or those of ``contacts`` / ``conversations``)
    from ``stream``; returns (entries deleted, conversation ids met that were not listed)."""
    contacts, known = list(contacts), list(conversations)
    start, deleted, found = "-", 0, set()
    while True:
        reply = await run_script(redis, ERASE_ENTRIES, [stream],
                           [start, CHUNK, org_id, len(contacts), *contacts, len(known), *known])
        last = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
        deleted += int(reply[1])
        for c in reply[2:]:
            c = c.decode() if isinstance(c, bytes) else c
            if c not in found and c not in known:
                found.add(c)
                known.append(c)
        if not last:
            return deleted, found
        start = "(" + last


async def delete_idempotency_keys(redis, shard: int, conversations, contacts=()) -> int:
    """``i:<conv>:<cmid>`` and ``i:n:<contact>:<cmid>`` keys of the shard (engine/lua/append.lua)."""
    prefix = keys.prefix(shard) + "i:"
    wanted_convs = {str(c) for c in conversations}
    wanted_contacts = {str(c) for c in contacts}
    doomed = []
    async for key in redis.scan_iter(match=_glob_escape(prefix) + "*", count=SCAN_COUNT):
        text = key.decode() if isinstance(key, bytes) else key
        rest = text[len(prefix):]
        if rest.startswith("n:"):
            owner = rest[2:].split(":", 1)[0]
            if owner in wanted_contacts:
                doomed.append(key)
        elif rest.split(":", 1)[0] in wanted_convs:
            doomed.append(key)
    removed = 0
    for i in range(0, len(doomed), 500):
        removed += await redis.delete(*doomed[i:i + 500])
    return removed


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


# ---- a contact -----------------------------------------------------------------------------------

async def erase_contact(config: Config, pool, redis, org_id, contact_id, *, control=None) -> ErasureReport | None:
    """Erase one contact everywhere; None when the organisation has no such contact.

    ``control(event)`` publishes a control event (``EngineClient.publish_control``); the
    caller passes it so the gateways close the contact's sockets first.
    """
    org, contact = str(org_id), str(contact_id)
    shard = keys.shard_of(org, config.engine.shards)
    report = ErasureReport()
    async with scoped(pool, org_id=org) as conn:
        exists = await conn.fetchval("SELECT true FROM contacts WHERE org_id = $1 AND id = $2", uuid.UUID(org),
                                     uuid.UUID(contact))
        if not exists:
            return None
        convs = [str(r[0]) for r in await conn.fetch(
            "SELECT id FROM conversations WHERE org_id = $1 AND contact_id = $2", uuid.UUID(org), uuid.UUID(contact))]
        merged = [str(r[0]) for r in await conn.fetch(
            "SELECT from_contact FROM contact_merges WHERE org_id = $1 AND into_contact = $2",
            uuid.UUID(org), uuid.UUID(contact))]
    report.conversations.update(convs)
    people = [contact, *merged]

    if control is not None:
        await control({"kind": "contact_erased", "org": org, "contact": contact})
    await close_conversations(redis, shard, org, report.conversations, "close")

    async with scoped(pool, org_id=org) as conn:
        await _tombstone(conn, org, report.conversations)
        status = await conn.execute("DELETE FROM contacts WHERE org_id = $1 AND id = $2",
                                    uuid.UUID(org), uuid.UUID(contact))
        report.rows = int(status.split()[-1])

    deleted, found = await erase_stream_entries(redis, keys.stream(shard), org, people, report.conversations)
    report.stream_entries = deleted
    if found:
        # conversations that only Redis knew: keep the workers from ever persisting them
        report.conversations |= found
        async with scoped(pool, org_id=org) as conn:
            await _tombstone(conn, org, found)
            await conn.execute("DELETE FROM conversations WHERE org_id = $1 AND id = ANY($2::uuid[])",
                               uuid.UUID(org), sorted(found))
    dead, found_dead = await erase_stream_entries(redis, keys.dead_letters(shard), org, people, report.conversations)
    report.dead_letters = dead
    report.conversations |= found_dead
    await close_conversations(redis, shard, org, report.conversations, "drop")
    report.redis_keys = await delete_idempotency_keys(redis, shard, report.conversations, people)
    log.info("contact erased", extra={"conversations": len(report.conversations),
                                      "stream_entries": report.stream_entries, "dead_letters": report.dead_letters})
    return report


async def _tombstone(conn, org: str, conversations) -> None:
    if conversations:
        await conn.execute(
            "INSERT INTO deleted_conversations (org_id, conversation_id) SELECT $1, x FROM unnest($2::uuid[]) AS x "
            "ON CONFLICT DO NOTHING", uuid.UUID(org), sorted(conversations))


# ---- an organisation -------------------------------------------------------------------------

def export_dir(config: Config) -> Path:
    return Path(config.data_rights.export_dir).resolve() if config.data_rights.export_dir \
        else config.data_dir / "exports"


async def purge_organisation(config: Config, pool, redis, org_id, *, control=None) -> ErasureReport | None:
    """Hard-delete an organisation whose deletion is due; None when it is not (restored, gone)."""
    org = str(org_id)
    shard = keys.shard_of(org, config.engine.shards)
    report = ErasureReport()
    async with scoped(pool, org_id=org) as conn:
        due = await conn.fetchval(
            "SELECT true FROM organisations WHERE id = $1 AND deletion_scheduled_at <= now()", uuid.UUID(org))
        if not due:
            return None
        report.conversations.update(str(r[0]) for r in await conn.fetch(
            "SELECT id FROM conversations WHERE org_id = $1", uuid.UUID(org)))
    if control is not None:
        await control({"kind": "org_deleted", "org": org})
    await close_conversations(redis, shard, org, report.conversations, "close")
    async with scoped(pool, org_id=org) as conn:
        # re-checked under lock: a restore that won the race keeps the organisation
        status = await conn.execute(
            "DELETE FROM organisations WHERE id = $1 AND deletion_scheduled_at <= now()", uuid.UUID(org))
        report.rows = int(status.split()[-1])
    if not report.rows:
        return None
    deleted, found = await erase_stream_entries(redis, keys.stream(shard), org)
    dead, found_dead = await erase_stream_entries(redis, keys.dead_letters(shard), org)
    report.stream_entries, report.dead_letters = deleted, dead
    report.conversations |= found | found_dead
    await close_conversations(redis, shard, org, report.conversations, "drop")
    report.redis_keys = await delete_idempotency_keys(redis, shard, report.conversations)
    folder = export_dir(config) / org
    if folder.exists():
        await asyncio.to_thread(shutil.rmtree, folder, True)
    log.info("organisation purged", extra={"conversations": len(report.conversations),
                                           "stream_entries": report.stream_entries})
    return report


async def purge_due(config: Config, pool, redis, *, control=None, limit: int = 10) -> int:
    async with pool.acquire() as conn:
        due = [r[0] for r in await conn.fetch("SELECT convot_due_org_deletions($1)", limit)]
    done = 0
    for org in due:
        if await purge_organisation(config, pool, redis, org, control=control) is not None:
            done += 1
    return done


async def run_org_purges(config: Config, pool, redis, stop: asyncio.Event, *, control=None) -> None:
    """Engine worker loop: purge organisations whose grace period is over.  ``control``
    defaults to the engine's control channel (every gateway closes the organisation's sockets)."""
    if control is None:
        from engine.client import EngineClient

        control = EngineClient(config, redis=redis, pool=pool).publish_control
    while not stop.is_set():
        try:
            await purge_due(config, pool, redis, control=control)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a dependency down: try again next round
            log.warning("organisation purge round failed", extra={"error": type(exc).__name__})
        try:
            await asyncio.wait_for(stop.wait(), config.data_rights.poll_interval)
        except asyncio.TimeoutError:
            pass
