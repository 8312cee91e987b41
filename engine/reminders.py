"""Reminders: at ``remind_at`` a private note is posted in the conversation and the agent is told.

Reminders are rows of ``reminders`` (PostgreSQL), so they survive restarts of every process.
The loop, in every engine worker:

1. asks which organisations have reminders due (``convot_due_reminder_orgs()``, ids only);
2. per organisation, in one transaction under its scope, locks up to ``BATCH`` due rows with
   ``FOR UPDATE SKIP LOCKED`` (several workers share the work, none fires a row twice), posts
   each note through the engine (type ``note``, author ``system``, ``client_msg_id``
   ``reminder:<id>``: if the transaction fails after the post, the retry answers the same
   message instead of a second one), marks the row fired and records a ``reminder``
   notification for the agent;
3. after COMMIT, publishes ``{"type": "notification", "notification": {...}}`` to the
   organisation's members (the inbox shows it to ``user_id``).

A reminder on a conversation that no longer exists is marked fired with the outcome
``conversation_gone`` (no note, no notification).  Between polls the loop sleeps until the next
reminder is due, at most ``workflow.reminder_poll_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import asyncpg
import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from convot.config import Config
from convot.db import scoped
from engine.availability import publish
from engine.client import EngineClient
from engine.errors import EngineError

log = logging.getLogger("convot.engine.reminders")

BATCH = 50
ORGS_PER_POLL = 100
MIN_SLEEP = 0.05
_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
_PG_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
            asyncpg.TooManyConnectionsError, TimeoutError)


def note_body(note: str) -> str:
    note = note.strip()
    return f"Reminder: {note}" if note else "Reminder"


def client_msg_id(reminder_id) -> str:
    return f"reminder:{reminder_id}"


def notification_frame(notification: dict) -> bytes:
    return orjson.dumps({"type": "notification", "notification": notification})


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat()


class ReminderLoop:
    def __init__(self, config: Config, pool: asyncpg.Pool, redis, engine: EngineClient):
        self.pool = pool
        self.redis = redis
        self.engine = engine
        self.shards = config.engine.shards
        self.poll_interval = config.workflow.reminder_poll_interval

    async def poll(self) -> int:
        """Fire every reminder due now; how many fired."""
        async with self.pool.acquire() as conn:
            orgs = [r[0] for r in await conn.fetch("SELECT convot_due_reminder_orgs($1)", ORGS_PER_POLL)]
        fired = 0
        for org in orgs:
            fired += await self.fire_org(str(org))
        return fired

    async def fire_org(self, org: str) -> int:
        fired = 0
        while True:
            frames: list[bytes] = []
            async with scoped(self.pool, org_id=org) as conn:
                rows = await conn.fetch(
                    """SELECT id, conversation_id, user_id, note, remind_at FROM reminders
                       WHERE org_id = $1 AND fired_at IS NULL AND remind_at <= now()
                       ORDER BY remind_at, id LIMIT $2 FOR UPDATE SKIP LOCKED""", org, BATCH)
                for r in rows:
                    frame = await self._fire(conn, org, r)
                    if frame is not None:
                        frames.append(frame)
            if frames:
                try:
                    await publish(self.redis, self.shards, org, frames, audience="m")
                except _REDIS_DOWN as exc:
                    # the notes and notification rows are committed; only the live ping is lost
                    log.warning("reminder notifications not published live (%s)", type(exc).__name__)
            fired += len(rows)
            if len(rows) < BATCH:
                return fired

    async def _fire(self, conn: asyncpg.Connection, org: str, r) -> bytes | None:
        conv, user = str(r["conversation_id"]), str(r["user_id"])
        try:
            ack = await self.engine.send_message(
                org, conv, type="note", author_kind="system", author_id=None, body=note_body(r["note"]),
                client_msg_id=client_msg_id(r["id"]),
                meta={"reminder": {"id": str(r["id"]), "user_id": user, "remind_at": _iso(r["remind_at"])}})
        except EngineError as exc:
            if exc.code != "not_found":
                raise
            await conn.execute("UPDATE reminders SET fired_at = now(), outcome = 'conversation_gone' "
                               "WHERE org_id = $1 AND id = $2", org, r["id"])
            return None
        await conn.execute("UPDATE reminders SET fired_at = now(), outcome = 'posted', message_seq = $3 "
                           "WHERE org_id = $1 AND id = $2", org, r["id"], ack.seq)
        n = await conn.fetchrow(
            "INSERT INTO notifications (org_id, user_id, kind, conversation_id, message_seq) "
            "VALUES ($1, $2, 'reminder', $3, $4) RETURNING id, created_at", org, user, conv, ack.seq)
        return notification_frame({
            "id": n["id"], "kind": "reminder", "user_id": user, "conversation_id": conv, "message_seq": ack.seq,
            "reminder_id": str(r["id"]), "note": r["note"], "remind_at": _iso(r["remind_at"]),
            "created_at": _iso(n["created_at"])})

    async def next_due_in(self) -> float:
        """Seconds until the next pending reminder (capped at the poll interval)."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT convot_next_reminder_at() AS at, now() AS now")
        if row["at"] is None:
            return self.poll_interval
        return min(self.poll_interval, max(MIN_SLEEP, (row["at"] - row["now"]).total_seconds()))

    async def run(self, stop: asyncio.Event) -> None:
        backoff = self.poll_interval
        while not stop.is_set():
            try:
                await self.poll()
                wait = await self.next_due_in()
                backoff = self.poll_interval
            except (*_PG_DOWN, *_REDIS_DOWN) as exc:
                log.warning("reminders: backing store unavailable (%s)", type(exc).__name__)
                wait = backoff
                backoff = min(backoff * 2, 10.0)
            except EngineError as exc:
                log.warning("reminders: engine refused (%s); retrying", exc.code)
                wait = backoff
                backoff = min(backoff * 2, 10.0)
            except Exception as exc:  # never let the loop die: log the type, back off, go on
                log.error("reminders: unexpected error (%s)", type(exc).__name__)
                wait = backoff
                backoff = min(backoff * 2, 10.0)
            try:
                await asyncio.wait_for(stop.wait(), wait)
            except asyncio.TimeoutError:
                pass
