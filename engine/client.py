"""EngineClient: the one way anything changes a conversation (gateway, admin API, inbox).

Every change goes through the organisation's shard stream, so every socket sees it live and
the workers persist it in order.  The API is small on purpose:

    client = EngineClient(config, pool=pool)          # pool: asyncpg, optional but needed for
    await client.start()                              # conversations not active in Redis
    ack = await client.send_message(org, conv, type="outgoing", author_kind="member",
                                    author_id=user, body="Hi", client_msg_id="c1")
    ack = await client.start_conversation(org, contact, app, body="Hello")   # shopper's first message
    conv = await client.create_conversation(org, contact, app, channel="api", actor=("api", key_id))
    await client.update_conversation(org, conv, status="resolved", actor=("member", user))
    await client.update_conversation(org, conv, assignee_id=user2, add_tags=["vip"], actor=...)
    await client.delete_message(org, conv, seq, actor=("member", user))
    await client.delete_conversation(org, conv, actor=("member", user))
    await client.publish_control({"kind": "member_removed", "org": org, "user": user})
    await client.close()

Refusals raise :class:`engine.errors.EngineError` with a stable ``code``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import asyncpg
import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from convot.config import Config
from convot.db import scoped
from engine import keys
from engine.batch import TurnBatcher
from engine.errors import EngineError
from engine.events import (
    AUTHOR_KINDS, CHANNELS, CLIENT_MSG_ID_RE, MAX_META_BYTES, MESSAGE_TYPES, STATUSES, actor_json,
    frame_message_object, is_uuid,
    message_frame, message_object, message_template, new_conversation_id, new_message_id, normalise_tag,
    tombstone,
)
from engine.resp import StreamReaderConnection
from engine.router import Ack, AppendRequest, ShardRouter, _RefusedAppend
from engine.scripts import Scripts

log = logging.getLogger("convot.engine.client")

KEEP = object()          # update_conversation(assignee_id=KEEP): leave the assignee alone
MAX_RESUME = 1000        # messages one resume may return per conversation
CONTROL_KINDS = ("member_removed", "role_changed", "token_revoked", "org_deleted", "contact_erased", "logout")
_PG_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
            asyncpg.TooManyConnectionsError, TimeoutError)
_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


def create_redis(config: Config, **kw):
    if config.redis.cluster:
        from engine.cluster import create_cluster     # multi-slot pipelines and reads (engine/cluster.py)

        return create_cluster(config.redis.url, config.redis.max_connections, **kw)
    if kw.get("single_connection_client"):
        return aioredis.Redis.from_url(config.redis.url, **kw)
    # Blocking pool: under a burst (a connection storm authenticating thousands of sockets) a
    # caller waits for a free connection instead of failing with "Too many connections".
    pool = aioredis.BlockingConnectionPool.from_url(config.redis.url, max_connections=config.redis.max_connections,
                                                    timeout=10, **kw)
    return aioredis.Redis.from_pool(pool)


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """What :meth:`EngineClient.update_conversation` did; truthy when something changed."""
    changed: bool            # an event was published
    assignee_kept: bool      # only_if_unassigned, and the conversation had an assignee: it kept it

    def __bool__(self) -> bool:
        return self.changed


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    org_id: str
    contact_id: str          # '' when the conversation has no contact (rare: API-created)
    app_id: str
    status: str
    assignee_id: str
    tags: tuple[str, ...]
    seq: int
    deleted: bool


def _actor(actor) -> bytes:
    kind, actor_id = actor
    if kind not in AUTHOR_KINDS:
        raise EngineError("invalid", "actor kind")
    return actor_json(kind, actor_id)


class EngineClient:
    def __init__(self, config: Config, *, redis=None, pool: asyncpg.Pool | None = None, metrics=None):
        self.config = config
        self.shards = config.engine.shards
        self.max_chars = config.gateway.max_message_chars
        self._own_redis = redis is None
        self.redis = redis if redis is not None else create_redis(config)
        self.pool = pool
        self.scripts = Scripts()
        e = config.engine
        self.meta_ttl = e.conversation_ttl
        # Appends get their own lean connection (engine/resp.py); on Redis Cluster the cluster
        # client routes each shard's call to its node.
        self._append_conn = None if config.redis.cluster else StreamReaderConnection(config.redis.url)
        self.router = ShardRouter(self.redis, self.scripts, shards=self.shards, idem_ttl=e.idempotency_ttl,
                                  recent_cap=e.recent_messages, meta_ttl=e.conversation_ttl, metrics=metrics,
                                  conn=self._append_conn)
        # Ephemeral events (typing, presence, read receipts) of one loop turn: one pipeline of
        # PUBLISH on a lean connection of their own (engine/batch.py), e.g. a reconnect wave's
        # presence announcements.
        self._publish_conn = None if config.redis.cluster else StreamReaderConnection(config.redis.url)
        self._publishes = TurnBatcher(self._publish_batch)

    async def start(self) -> None:
        await self.scripts.load(self.redis)

    async def close(self) -> None:
        await self.router.close()
        if self._append_conn is not None:
            await self._append_conn.aclose()
        await self._publishes.idle()          # queued ephemeral events (a drain's presence) go out
        if self._publish_conn is not None:
            await self._publish_conn.aclose()
        if self._own_redis:
            await self.redis.aclose()

    def shard_of(self, org_id: str) -> int:
        return keys.shard_of(org_id, self.shards)

    # ---- messages --------------------------------------------------------------------------

    def _check_message(self, type_, author_kind, body, client_msg_id, meta) -> None:
        if type_ not in MESSAGE_TYPES:
            raise EngineError("invalid", "type")
        if author_kind not in AUTHOR_KINDS:
            raise EngineError("invalid", "author_kind")
        if not isinstance(body, str) or not body.strip() or len(body) > self.max_chars:
            raise EngineError("invalid", "body")
        if client_msg_id is not None and (not isinstance(client_msg_id, str) or not CLIENT_MSG_ID_RE.match(client_msg_id)):
            raise EngineError("invalid", "client_msg_id")
        if meta is not None and (not isinstance(meta, dict) or len(orjson.dumps(meta)) > MAX_META_BYTES):
            raise EngineError("invalid", "meta")

    def send_message_nowait(self, org_id: str, conversation_id: str, *, type: str, author_kind: str,
                            author_id: str | None, body: str, client_msg_id: str | None = None,
                            meta: dict | None = None, contact_id: str | None = None) -> AppendRequest:
        """Validated request for :meth:`append` (the gateway's hot path)."""
        self._check_message(type, author_kind, body, client_msg_id, meta)
        if not is_uuid(conversation_id):
            raise EngineError("not_found")
        mid = new_message_id()
        t = message_template(conversation_id, mid, client_msg_id, type, author_kind, author_id, body, meta)
        return AppendRequest(conversation_id, "e", org_id, contact_id or "", "", "", client_msg_id or "", type,
                             t.head, t.mid, t.tail, mid, b"")

    async def append(self, req: AppendRequest) -> Ack:
        """Append a prepared request; hydrates a conversation that has gone cold in Redis."""
        try:
            return await self.router.append(req)
        except _RefusedAppend as refused:
            if refused.code == "cold" and req.mode == "e":
                if await self._hydrate(req.org_id, req.conversation_id):
                    try:
                        return await self.router.append(req)
                    except _RefusedAppend as again:
                        raise EngineError("not_found" if again.code == "cold" else again.code) from None
                raise EngineError("not_found") from None
            raise EngineError("not_found" if refused.code == "cold" else refused.code) from None

    async def send_message(self, org_id: str, conversation_id: str, *, type: str, author_kind: str,
                           author_id: str | None, body: str, client_msg_id: str | None = None,
                           meta: dict | None = None, contact_id: str | None = None) -> Ack:
        """Append one message.  ``contact_id`` restricts the send to that contact's conversation."""
        req = self.send_message_nowait(org_id, conversation_id, type=type, author_kind=author_kind,
                                       author_id=author_id, body=body, client_msg_id=client_msg_id, meta=meta,
                                       contact_id=contact_id)
        return await self.append(req)

    def start_conversation_nowait(self, org_id: str, contact_id: str, app_id: str, *, body: str,
                                  client_msg_id: str | None = None, meta: dict | None = None,
                                  channel: str = "widget") -> AppendRequest:
        self._check_message("incoming", "contact", body, client_msg_id, meta)
        if channel not in CHANNELS or not is_uuid(contact_id) or not is_uuid(app_id):
            raise EngineError("invalid", "contact_id, app_id or channel")
        conv = new_conversation_id()
        mid = new_message_id()
        t = message_template(conv, mid, client_msg_id, "incoming", "contact", contact_id, body, meta)
        return AppendRequest(conv, "n", org_id, contact_id, app_id, channel, client_msg_id or "", "incoming",
                             t.head, t.mid, t.tail, mid, actor_json("contact", contact_id))

    async def start_conversation(self, org_id: str, contact_id: str, app_id: str, *, body: str,
                                 client_msg_id: str | None = None, meta: dict | None = None,
                                 channel: str = "widget") -> Ack:
        """A contact's first message, creating the conversation; a retry returns the first ack."""
        return await self.append(self.start_conversation_nowait(
            org_id, contact_id, app_id, body=body, client_msg_id=client_msg_id, meta=meta, channel=channel))

    async def create_conversation(self, org_id: str, contact_id: str, app_id: str | None = None, *,
                                  channel: str = "api", actor=("system", None),
                                  client_msg_id: str | None = None) -> str:
        """An empty conversation (REST API, inbox "new conversation"); returns its id."""
        if channel not in CHANNELS or not is_uuid(contact_id) or (app_id is not None and not is_uuid(app_id)):
            raise EngineError("invalid", "contact_id, app_id or channel")
        if client_msg_id is not None and not CLIENT_MSG_ID_RE.match(client_msg_id):
            raise EngineError("invalid", "client_msg_id")
        req = AppendRequest(new_conversation_id(), "c", org_id, contact_id, app_id or "", channel,
                            client_msg_id or "", "", b"", b"", b"", "", _actor(actor))
        return (await self.append(req)).conversation_id

    # ---- conversation state ----------------------------------------------------------------

    async def _script(self, name: str, org_id: str, args: list) -> list:
        try:
            return await self.scripts.run(self.redis, name, [keys.stream(self.shard_of(org_id))], args)
        except _REDIS_DOWN:
            raise EngineError("unavailable", "Redis unavailable") from None

    async def _state_script(self, name: str, org_id: str, conversation_id: str, args: list) -> list:
        if not is_uuid(conversation_id):
            raise EngineError("not_found")
        reply = await self._script(name, org_id, args)
        if reply[0] == b"cold":
            if not await self._hydrate(org_id, conversation_id):
                raise EngineError("not_found")
            reply = await self._script(name, org_id, args)
        if reply[0] != b"ok":
            raise EngineError("not_found" if reply[0] == b"cold" else reply[0].decode())
        return reply

    async def update_conversation(self, org_id: str, conversation_id: str, *, status: str | None = None,
                                  assignee_id=KEEP, tags=None, add_tags=(), remove_tags=(),
                                  actor=("system", None), only_if_unassigned: bool = False) -> UpdateResult:
        """Change status / assignee / tags in one event; the result is falsy when nothing changed
        (no event).

        ``only_if_unassigned=True`` sets ``assignee_id`` only if the conversation has no assignee,
        decided atomically inside update.lua: an assignee someone set in the meantime is kept
        (``result.assignee_kept``) and the rest of the change still applies.  Auto-assignment
        uses it, so a manual assignment always wins."""
        if status is not None and status not in STATUSES:
            raise EngineError("invalid", "status")
        if assignee_id is KEEP:
            assignee = "-"
        elif assignee_id is None:
            assignee = ""
        elif is_uuid(str(assignee_id)):
            assignee = ("?" if only_if_unassigned else "") + str(assignee_id)
        else:
            raise EngineError("invalid", "assignee_id")

        def norm(values) -> str:
            if isinstance(values, str) or not all(isinstance(v, str) for v in values) or len(values) > 50:
                raise EngineError("invalid", "tags")
            out = []
            for v in values:
                tag = normalise_tag(v)
                if tag is None:
                    raise EngineError("invalid", "tags")
                out.append(tag)
            return ",".join(out)

        tag_set = "-" if tags is None else norm(tags)
        reply = await self._state_script("update", org_id, conversation_id, [
            conversation_id, org_id, status or "", assignee, tag_set, norm(add_tags), norm(remove_tags), "0",
            _actor(actor), self.meta_ttl])
        return UpdateResult(bool(reply[1]), bool(reply[3]))

    async def delete_conversation(self, org_id: str, conversation_id: str, *, actor=("system", None)) -> None:
        await self._state_script("update", org_id, conversation_id, [
            conversation_id, org_id, "", "-", "-", "", "", "1", _actor(actor), self.meta_ttl])

    async def delete_message(self, org_id: str, conversation_id: str, seq: int, *, actor=("system", None),
                             authorize=None) -> dict:
        """Delete message ``seq``; ``authorize(message)`` may raise to refuse.  Returns the tombstone."""
        message = await self.get_message(org_id, conversation_id, seq)
        if message is None or message["deleted"]:
            raise EngineError("not_found")
        if authorize is not None:
            authorize(message)
        kind, actor_id = actor
        tomb = tombstone(message, actor_id if kind == "member" else None, int(time.time() * 1000))
        vis = "m" if message["type"] == "note" else "a"
        await self._state_script("delete_message", org_id, conversation_id, [
            conversation_id, org_id, seq, vis, tomb, _actor(actor)])
        return orjson.loads(tomb)

    async def conversation(self, org_id: str, conversation_id: str) -> Conversation | None:
        """The conversation's live state (from Redis, hydrated from PostgreSQL when cold)."""
        if not is_uuid(conversation_id):
            return None
        key = keys.meta(self.shard_of(org_id), conversation_id)
        fields = ("org", "contact", "app", "status", "assignee", "tags", "seq", "deleted")
        for attempt in (0, 1):
            try:
                v = await self.redis.hmget(key, fields)
            except _REDIS_DOWN:
                raise EngineError("unavailable", "Redis unavailable") from None
            if v[0] is not None:
                break
            if attempt or not await self._hydrate(org_id, conversation_id):
                return None
        if v[0].decode() != org_id or v[7] == b"1":
            return None
        return Conversation(conversation_id, org_id, v[1].decode(), v[2].decode(), v[3].decode(), v[4].decode(),
                            tuple(t for t in v[5].decode().split(",") if t), int(v[6]), v[7] == b"1")

    async def _hydrate(self, org_id: str, conversation_id: str) -> bool:
        if self.pool is None:
            return False
        try:
            async with scoped(self.pool, org_id=org_id) as conn:
                row = await conn.fetchrow(
                    """SELECT c.contact_id, c.app_id, c.channel, c.status, c.assignee_id, c.last_seq, c.state_rev,
                              c.created_at,
                              COALESCE((SELECT string_agg(t.name, ',' ORDER BY t.name) FROM conversation_tags ct
                                        JOIN tags t ON t.id = ct.tag_id WHERE ct.conversation_id = c.id), '') AS tags
                       FROM conversations c WHERE c.id = $1 AND c.org_id = $2""",
                    conversation_id, org_id)
        except _PG_DOWN:
            raise EngineError("unavailable", "PostgreSQL unavailable") from None
        if row is None:
            return False
        await self._script("hydrate", org_id, [
            conversation_id, org_id, str(row["contact_id"] or ""), str(row["app_id"] or ""), row["channel"],
            row["status"], str(row["assignee_id"] or ""), row["tags"], row["last_seq"], row["state_rev"],
            int(row["created_at"].timestamp() * 1000), self.meta_ttl])
        return True

    # ---- reading: resume and history --------------------------------------------------------

    async def _recent(self, org_id: str, conversation_id: str, after_seq: int, contact_id: str) -> tuple[int, int, list]:
        reply = await self._state_script("recent", org_id, conversation_id,
                                         [conversation_id, org_id, contact_id, after_seq])
        return reply[1], reply[2], reply[3:]

    async def _pg_messages(self, org_id: str, conversation_id: str, after: int, before: int, limit: int,
                           include_notes: bool, newest_first: bool = False) -> list:
        if self.pool is None:
            raise EngineError("unavailable", "no database configured")
        order = "DESC" if newest_first else "ASC"
        try:
            async with scoped(self.pool, org_id=org_id) as conn:
                rows = await conn.fetch(
                    "SELECT conversation_id, seq, id, client_msg_id, type, author_kind, author_id, body, meta, "
                    "created_at, deleted_at FROM messages WHERE org_id = $1 AND conversation_id = $2 "
                    "AND seq > $3 AND seq < $4 AND ($5 OR type <> 'note') ORDER BY seq " + order + " LIMIT $6",
                    org_id, conversation_id, after, before, include_notes, limit)
        except _PG_DOWN:
            raise EngineError("unavailable", "PostgreSQL unavailable") from None
        return rows

    async def missed(self, org_id: str, conversation_id: str, after_seq: int, *, contact_id: str = "",
                     include_notes: bool = True) -> tuple[list[bytes], int, bool]:
        """Message frames with seq > after_seq in order: (frames, last seq, complete).

        Recent ones come from Redis; older ones from PostgreSQL.  Redis keeps every message
        PostgreSQL does not have yet, so the two ranges always meet.
        """
        seq, first, items = await self._recent(org_id, conversation_id, max(0, after_seq), contact_id)
        frames: list[bytes] = []
        complete = True
        if after_seq + 1 < first:
            limit = MAX_RESUME
            rows = await self._pg_messages(org_id, conversation_id, after_seq, first, limit + 1, include_notes)
            if len(rows) > limit:
                rows = rows[:limit]
                complete = False
                items = []
            frames = [message_frame(message_object(r)) for r in rows]
        for item in items:
            if include_notes or item[:1] == b"a":
                frames.append(item[1:])
        if not complete:
            seq = rows[-1]["seq"] if rows else after_seq
        return frames, seq, complete

    async def get_message(self, org_id: str, conversation_id: str, seq: int) -> dict | None:
        if not isinstance(seq, int) or seq < 1:
            return None
        last, first, items = await self._recent(org_id, conversation_id, seq - 1, "")
        if seq > last:
            return None
        if seq >= first and items:
            return orjson.loads(items[0][1:])["message"]
        rows = await self._pg_messages(org_id, conversation_id, seq - 1, seq + 1, 1, True)
        return message_object(rows[0]) if rows else None

    async def history(self, org_id: str, conversation_id: str, *, before_seq: int | None = None, limit: int = 50,
                      contact_id: str = "", include_notes: bool = True) -> tuple[list[bytes], bool]:
        """Up to ``limit`` message objects (JSON bytes, oldest first) with seq < before_seq."""
        limit = max(1, min(int(limit), 200))
        last, first, items = await self._recent(org_id, conversation_id, 0, contact_id)
        before = last + 1 if before_seq is None else min(int(before_seq), last + 1)
        picked: list[bytes] = []
        for idx in range(len(items) - 1, -1, -1):
            s = first + idx
            if s >= before:
                continue
            item = items[idx]
            if include_notes or item[:1] == b"a":
                picked.append(frame_message_object(item[1:]))
            if len(picked) == limit:
                break
        picked.reverse()
        lowest_redis = max(first, 1) if items else last + 1
        more = False
        if len(picked) < limit and min(lowest_redis, before) > 1:
            upper = min(lowest_redis, before)
            rows = await self._pg_messages(org_id, conversation_id, 0, upper, limit - len(picked) + 1,
                                           include_notes, newest_first=True)
            more = len(rows) > limit - len(picked)
            rows = rows[:limit - len(picked)]
            picked = [orjson.dumps(message_object(r)) for r in reversed(rows)] + picked
        elif len(picked) == limit:
            more = True
        return picked, more

    # ---- ephemeral events and control ---------------------------------------------------------

    async def publish_ephemeral(self, org_id: str, frame: bytes, *, contact_id: str = "", members_only: bool = False,
                                everyone: bool = False, sender: str = "") -> None:
        """Typing, presence, read receipts: fanned out, never stored.

        Recipients: the organisation's members, plus ``contact_id``'s sockets unless
        ``members_only``; ``everyone`` reaches every socket of the organisation.  ``sender``
        (a connection id) is skipped.
        """
        try:
            await self.publish_ephemeral_nowait(org_id, frame, contact_id=contact_id, members_only=members_only,
                                                everyone=everyone, sender=sender)
        except _REDIS_DOWN:
            raise EngineError("unavailable", "Redis unavailable") from None

    def publish_ephemeral_nowait(self, org_id: str, frame: bytes, *, contact_id: str = "", members_only: bool = False,
                                 everyone: bool = False, sender: str = "") -> asyncio.Future:
        """:meth:`publish_ephemeral` for callers that do not wait (no task each): the future of
        the batched PUBLISH, failed with the Redis error if it could not be sent."""
        audience = "o" if everyone else ("m" if members_only else "a")
        header = f"{org_id}|{contact_id}|{audience}|{sender}|".encode()
        return self._publishes.submit((keys.ephemeral_channel(self.shard_of(org_id)), header + frame))

    async def _publish_batch(self, items: list[tuple[str, bytes]]) -> list:
        if self._publish_conn is None:      # Redis Cluster: each channel through the cluster client
            return await asyncio.gather(*(self.redis.publish(c, d) for c, d in items), return_exceptions=True)
        replies = await self._publish_conn.pipeline([("PUBLISH", c, d) for c, d in items])
        return [ConnectionError(f"publish: {r}") if isinstance(r, Exception) else r for r in replies]

    async def publish_control(self, event: dict) -> None:
        """Revocations.  Writes the record that stops reconnection, then tells every gateway.

        kinds: member_removed {org, user} | role_changed {org, user, version} | logout {org, user}
               | contact_erased {org, contact} | token_revoked {jti, exp} | org_deleted {org}
        """
        kind = event.get("kind")
        if kind not in CONTROL_KINDS:
            raise EngineError("invalid", "kind")
        now = int(time.time())
        ttl = max(self.config.auth.agent_token_ttl, self.config.auth.widget_token_ttl) + 60
        pipe = self.redis.pipeline(transaction=False)
        if kind == "token_revoked":
            jti, exp = event.get("jti"), event.get("exp")
            if not isinstance(jti, str) or not jti or not isinstance(exp, int):
                raise EngineError("invalid", "jti/exp")
            pipe.set(keys.revoked_token(jti), 1, ex=max(exp - now, 0) + 60)
        elif kind == "org_deleted":
            _need_uuid(event, "org")
            pipe.set(keys.revoked_org(event["org"]), now, ex=ttl)
        else:
            subject_field = "contact" if kind == "contact_erased" else "user"
            _need_uuid(event, "org")
            _need_uuid(event, subject_field)
            version = event.get("version", -1) if kind == "role_changed" else -1
            if not isinstance(version, int):
                raise EngineError("invalid", "version")
            # iat <= cut dies (removed, logged out, erased); a role change kills older versions.
            cut = -1 if kind == "role_changed" else now
            pipe.set(keys.revoked_subject(event["org"], event[subject_field]), f"{cut}:{version}", ex=ttl)
        pipe.publish(keys.CONTROL_CHANNEL, orjson.dumps(event))
        try:
            await pipe.execute()
        except _REDIS_DOWN:
            raise EngineError("unavailable", "Redis unavailable") from None


def _need_uuid(event: dict, field: str) -> None:
    if not is_uuid(str(event.get(field, ""))):
        raise EngineError("invalid", field)
