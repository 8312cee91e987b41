"""Outgoing webhooks: what happened in an organisation, POSTed to its endpoints, signed.

Two loops run in every engine worker process (``run_webhooks``):

* the **dispatcher** reads every shard stream through its own consumer group ``webhooks``
  (independent of the persisting group), maps each stream entry to webhook events with the
  pure :func:`events_from_entry`, and enqueues one ``webhook_deliveries`` row per subscribed
  endpoint.  The event id is derived from the stream entry id, and ``UNIQUE (webhook_id,
  event_id)`` makes a re-read entry a no-op; only after the rows are committed is the entry
  acknowledged.  Contact events (``contact.created``, ``contact.identified``) are enqueued by
  the admin API directly with :func:`enqueue`.
* the **delivery loop** asks PostgreSQL which organisations have deliveries due
  (``convot_due_webhook_orgs``, ids only), claims due rows under that organisation's scope
  with a lease (``next_attempt_at`` moved past the attempt's timeout, so a crashed process's
  claims come back), and POSTs them with its own HTTP session: bounded concurrency overall
  and per endpoint, a hard timeout per attempt, no redirects, and outside development no
  private or loopback addresses.  A failure is retried with exponential backoff and jitter
  until ``webhooks.give_up_after`` seconds after the event, then the delivery is ``failed``.

Nothing here runs in the path of a chat message: a slow or dead endpoint holds at most
``per_endpoint`` slots of this loop and delays nobody else.

Signature (docs/webhooks.md): ``Convot-Signature: t=<unix seconds>,v1=<hex>`` where ``hex`` is
HMAC-SHA256 keyed by the webhook's secret over ``"<t>.<raw body>"``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import ipaddress
import logging
import random
import secrets
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import orjson
from prometheus_client import Counter, Histogram
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from convot.config import Config
from convot.crypto import CryptoError, Encryptor, row_aad
from convot.db import scoped, set_scope
from engine import keys
from engine.groups import GroupReader

log = logging.getLogger("convot.engine.webhooks")

EVENTS = (
    "message.sent", "message.received", "message.deleted",
    "conversation.created", "conversation.assigned", "conversation.resolved", "conversation.reopened",
    "contact.created", "contact.identified",
)
TEST_EVENT = "webhook.test"
GROUP = "webhooks"                       # this dispatcher's consumer group on every shard stream
SIGNATURE_HEADER = "Convot-Signature"
USER_AGENT = "Convot-Webhooks/1"
SECRET_PREFIX = "whsec_"
MAX_URL_LENGTH = 2000
READ_BLOCK_MS = 1000
READ_COUNT = 500
CLAIM_IDLE_MS = 60000                    # a dead dispatcher's unacknowledged entries are taken over after this
RESPONSE_READ_LIMIT = 64 * 1024          # bytes of an answer read (and discarded) before closing
LEASE_MARGIN = 30.0                      # seconds a claimed delivery stays invisible beyond its timeout
ORGS_PER_POLL = 100
MAX_ERROR_LENGTH = 200
STOP_GRACE_SECONDS = 5.0

_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
_PG_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
            asyncpg.TooManyConnectionsError, TimeoutError)

enqueued_total = Counter("convot_webhook_events_enqueued_total", "webhook deliveries enqueued", ["event"])
attempts_total = Counter("convot_webhook_attempts_total", "webhook delivery attempts", ["result"])
attempt_seconds = Histogram("convot_webhook_attempt_seconds", "duration of one webhook delivery attempt",
                            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))


# ---- events: pure ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Event:
    """One webhook event of one organisation, before it is fanned out to endpoints."""

    org_id: str
    type: str
    id: str
    contact_id: str | None
    payload: dict            # the whole JSON body an endpoint receives


def iso_ms(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_id(shard: int, entry_id: str, event_type: str) -> str:
    """Stable per stream entry and event type, so a re-read entry enqueues nothing new."""
    digest = hashlib.sha256(f"{shard}|{entry_id}|{event_type}".encode()).hexdigest()[:32]
    return "ev_" + digest


def envelope(org_id: str, event_type: str, ev_id: str, created_at: str, data: dict) -> dict:
    return {"id": ev_id, "type": event_type, "created_at": created_at, "org_id": org_id, "data": data}


def _text(fields: Mapping[bytes, bytes], name: bytes) -> str:
    value = fields.get(name, b"")
    return value.decode() if isinstance(value, bytes) else str(value)


def _message_data(m: dict) -> dict:
    return {"id": m["id"], "seq": m["seq"], "type": m["type"], "author_kind": m["author_kind"],
            "author_id": m["author_id"], "body": m["body"], "client_msg_id": m.get("client_msg_id"),
            "created_at": iso_ms(m["created_at"]) if isinstance(m.get("created_at"), int) else m.get("created_at")}


def _conversation_data(c: dict) -> dict:
    return {"id": c["id"], "status": c["status"], "assignee_id": c.get("assignee_id"), "tags": c.get("tags", []),
            "contact_id": c.get("contact_id"), "app_id": c.get("app_id"), "channel": c.get("channel"),
            "created_at": iso_ms(c["created_at"]) if isinstance(c.get("created_at"), int) else None}


def events_from_entry(shard: int, entry_id: str, fields: Mapping[bytes, bytes]) -> list[Event]:
    """The webhook events one shard-stream entry stands for (often none).

    message entries: ``incoming`` -> message.received; ``outgoing`` and ``note`` ->
    message.sent (``data.message.type`` tells them apart); ``activity`` -> nothing.
    conversation updates: ``created`` -> conversation.created; ``assignment`` ->
    conversation.assigned; ``status`` to resolved / open -> conversation.resolved / reopened;
    ``message_deleted`` -> message.deleted.
    """
    if not fields or b"t" not in fields or b"f" not in fields:
        return []  # an entry deleted while pending comes back empty
    org = _text(fields, b"o")
    contact = _text(fields, b"k") or None
    kind = fields[b"t"]
    try:
        frame = orjson.loads(fields[b"f"])
    except orjson.JSONDecodeError:
        return []
    out: list[Event] = []

    def add(event_type: str, created_at: str, data: dict) -> None:
        ev = event_id(shard, entry_id, event_type)
        out.append(Event(org, event_type, ev, contact, envelope(org, event_type, ev, created_at, data)))

    if kind == b"m":
        m = frame.get("message") or {}
        event_type = {"incoming": "message.received", "outgoing": "message.sent", "note": "message.sent"}.get(
            m.get("type"))
        if event_type is None:
            return []
        conversation = {"id": m["conversation_id"], "contact_id": contact, "app_id": _text(fields, b"a") or None,
                        "channel": _text(fields, b"h") or None}
        add(event_type, iso_ms(m["created_at"]), {"conversation": conversation, "message": _message_data(m)})
    elif kind == b"u":
        changes = frame.get("changes") or []
        c = frame.get("conversation") or {}
        at = iso_ms(frame["at"]) if isinstance(frame.get("at"), int) else iso_ms(int(time.time() * 1000))
        data = {"conversation": _conversation_data(c), "actor": frame.get("actor")}
        if "created" in changes:
            add("conversation.created", at, data)
        if "assignment" in changes:
            add("conversation.assigned", at, data)
        if "status" in changes and c.get("status") == "resolved":
            add("conversation.resolved", at, data)
        if "status" in changes and c.get("status") == "open":
            add("conversation.reopened", at, data)
        if "message_deleted" in changes and isinstance(frame.get("message"), dict):
            t = frame["message"]
            add("message.deleted", at, {
                "conversation": _conversation_data(c), "actor": frame.get("actor"),
                "message": {"id": t.get("id"), "seq": t.get("seq"), "type": t.get("type"),
                            "deleted_by": t.get("deleted_by"),
                            "deleted_at": iso_ms(t["deleted_at"]) if isinstance(t.get("deleted_at"), int) else at}})
    return out


CONTACT_FIELDS = ("id", "external_id", "email", "name", "company", "phone", "avatar_url", "custom_data",
                  "verified", "shop", "shop_verified", "created_at")


def contact_data(row: Mapping[str, Any]) -> dict:
    out = {}
    for name in CONTACT_FIELDS:
        value = row[name]
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, dt.datetime):
            value = iso(value)
        out[name] = value
    return out


def contact_event(org_id, event_type: str, row: Mapping[str, Any]) -> Event:
    """``contact.created`` / ``contact.identified`` for a contact row (admin API side)."""
    if event_type not in ("contact.created", "contact.identified"):
        raise ValueError(event_type)
    ev = "ev_" + secrets.token_hex(16)
    now = iso(dt.datetime.now(dt.timezone.utc))
    return Event(str(org_id), event_type, ev, str(row["id"]),
                 envelope(str(org_id), event_type, ev, now, {"contact": contact_data(row)}))


def test_event(org_id, webhook_id) -> Event:
    ev = "ev_" + secrets.token_hex(16)
    now = iso(dt.datetime.now(dt.timezone.utc))
    return Event(str(org_id), TEST_EVENT, ev, None,
                 envelope(str(org_id), TEST_EVENT, ev, now, {"webhook_id": str(webhook_id)}))


# ---- signatures: pure ----------------------------------------------------------------------

def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, *, now: float, tolerance: int = 300) -> bool:
    """What a receiver does (docs/webhooks.md): parse, check freshness, compare in constant time."""
    timestamp, candidates = None, []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates or abs(now - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected.encode(), c.encode()) for c in candidates)


# ---- retry schedule: pure ------------------------------------------------------------------

def retry_delay(attempts: int, base: float, cap: float, rand: float) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: base * 2^(n-1), capped,
    with "equal jitter" (half fixed, half random) so endpoints recovering from an outage are
    not hit by every retry at once."""
    ceiling = min(cap, base * (2 ** min(max(attempts - 1, 0), 30)))
    return ceiling / 2 + rand * ceiling / 2


def after_failure(attempts: int, created_at: dt.datetime, now: dt.datetime, *, base: float, cap: float,
                  give_up_after: float, rand: float) -> dt.datetime | None:
    """When to try again, or None: the event is older than ``give_up_after`` by then (failed)."""
    at = now + dt.timedelta(seconds=retry_delay(attempts, base, cap, rand))
    if at > created_at + dt.timedelta(seconds=give_up_after):
        return None
    return at


# ---- endpoint policy: pure -----------------------------------------------------------------

def address_allowed(address: str, development: bool) -> bool:
    """Outside development, deliveries go to public addresses only (no SSRF into our network)."""
    if development:
        return True
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def url_problem(url: str, development: bool) -> str | None:
    """Why an endpoint URL is refused (None = acceptable).  https only outside development."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        return f"must be a URL of at most {MAX_URL_LENGTH} characters"
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    allowed = ("https", "http") if development else ("https",)
    if parts.scheme not in allowed:
        return "must use https" if not development else "must use http or https"
    if not parts.hostname:
        return "must name a host"
    if parts.username or parts.password:
        return "must not contain credentials"
    if parts.fragment:
        return "must not contain a fragment"
    if port == 0:
        return "has an invalid port"
    host = parts.hostname
    try:
        ipaddress.ip_address(host)
        literal = True
    except ValueError:
        literal = False
    if literal and not address_allowed(host, development):
        return "must not point to a private, loopback or reserved address"
    if not literal and not development and (host == "localhost" or host.endswith(".localhost")
                                            or host.endswith(".internal") or host.endswith(".local")
                                            or "." not in host):
        return "must name a public host"
    return None


class PublicResolver(aiohttp.abc.AbstractResolver):
    """Resolves like aiohttp's default resolver, then drops non-public addresses.

    The check happens on the addresses the connection will actually use, so a DNS name that
    points at (or is rebound to) 127.0.0.1 or 10.0.0.0/8 cannot reach inside.
    """

    def __init__(self, development: bool) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._development = development

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):
        infos = await self._inner.resolve(host, port, family)
        allowed = [i for i in infos if address_allowed(i["host"], self._development)]
        if not allowed:
            raise OSError(f"{host} resolves to no public address")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


# ---- enqueueing ------------------------------------------------------------------------------

_ENQUEUE = """
INSERT INTO webhook_deliveries (org_id, webhook_id, event, event_id, payload, contact_id)
SELECT $1, w.id, e.event, e.event_id, e.payload::jsonb, e.contact
FROM unnest($2::text[], $3::text[], $4::text[], $5::uuid[]) AS e0(event, event_id, payload, contact_id)
CROSS JOIN LATERAL (
    -- a contact merged into another (verified identity) is reported as the one it became
    SELECT e0.event, e0.event_id, e0.payload,
           COALESCE((SELECT m.into_contact FROM contact_merges m
                     WHERE m.org_id = $1 AND m.from_contact = e0.contact_id), e0.contact_id) AS contact
) AS e
JOIN webhooks w ON w.org_id = $1 AND w.enabled AND ($6::uuid IS NULL OR w.id = $6::uuid)
                AND (e.event = ANY(w.events) OR (e.event = 'webhook.test' AND w.id = $6::uuid))
WHERE e.contact IS NULL OR EXISTS (SELECT 1 FROM contacts c WHERE c.org_id = $1 AND c.id = e.contact)
ON CONFLICT (webhook_id, event_id) DO NOTHING
RETURNING event
"""


async def enqueue(conn: asyncpg.Connection, org_id, events: Iterable[Event], *, webhook_id=None) -> int:
    """Insert a delivery per subscribed, enabled endpoint; ``conn`` is scoped to ``org_id``.

    Events about a contact that no longer exists (erased) enqueue nothing.  ``webhook_id``
    limits the fan-out to one endpoint (the "send test" button).
    """
    events = [e for e in events if e.org_id == str(org_id)]
    if not events:
        return 0
    args = [org_id, [e.type for e in events], [e.id for e in events],
            [orjson.dumps(e.payload).decode() for e in events], [e.contact_id for e in events], webhook_id]
    for attempt in range(3):
        try:
            async with conn.transaction():   # a savepoint inside the caller's transaction
                rows = await conn.fetch(_ENQUEUE, *args)
            break
        except asyncpg.ForeignKeyViolationError:
            # the contact was erased while we enqueued: the next try no longer sees it
            if attempt == 2:
                raise
    for row in rows:
        enqueued_total.labels(row["event"]).inc()
    return len(rows)


# ---- the dispatcher: shard streams -> deliveries ------------------------------------------

class StreamDispatcher:
    """Reads every shard stream through the ``webhooks`` consumer group and enqueues events."""

    def __init__(self, config: Config, pool, redis, *, consumer: str | None = None, wake=None,
                 group: str = GROUP) -> None:
        self.pool = pool
        self.group = group
        self.redis = redis
        self.shards = config.engine.shards
        self.streams = {keys.stream(s): s for s in range(self.shards)}
        # "$": a new group starts with what happens from now on, not the whole history; so does
        # one Redis lost (NOGROUP), created again by the GroupReader
        self.group_reader = GroupReader(redis, group, self.streams, start_id="$", count=READ_COUNT,
                                        claim_idle_ms=CLAIM_IDLE_MS, linger=config.engine.batch_linger_ms / 1000,
                                        consumer=consumer)
        self.consumer = self.group_reader.consumer
        self._wake = wake

    async def setup(self) -> None:
        await self.group_reader.create()

    async def step(self, block_ms: int = READ_BLOCK_MS) -> int:
        """One batch: claimed idle entries first, else new ones; enqueue, then acknowledge."""
        entries = await self.group_reader.claim_if_due()
        if not entries:
            entries = await self.group_reader.read(block_ms)
        if not entries:
            return 0
        await self.dispatch(entries)
        return len(entries)

    async def dispatch(self, entries: list[tuple[str, bytes, dict]]) -> int:
        count = 0
        candidates = {f[b"o"] for _, _, f in entries if f and b"o" in f}
        if candidates:
            async with self.pool.acquire() as conn:
                # Only organisations with an enabled endpoint get events built and enqueued: one
                # round trip for the batch (as the enqueue's own join would decide, just earlier).
                subscribed = {str(r[0]) for r in await conn.fetch(
                    "SELECT convot_webhook_subscribed_orgs($1::uuid[])", [o.decode() for o in candidates])}
                by_org: dict[str, list[Event]] = {}
                for stream, eid, fields in entries:
                    if not fields or fields.get(b"o", b"").decode() not in subscribed:
                        continue
                    entry_id = eid.decode() if isinstance(eid, bytes) else eid
                    for ev in events_from_entry(self.streams[stream], entry_id, fields):
                        by_org.setdefault(ev.org_id, []).append(ev)
                if by_org:
                    # one transaction for the batch; the row-level-security scope switches per organisation
                    async with conn.transaction():
                        for org, events in by_org.items():
                            await set_scope(conn, org_id=org)
                            count += await enqueue(conn, org, events)
        # committed: now the entries may be forgotten
        await self.group_reader.ack(entries)
        if count and self._wake is not None:
            self._wake.set()
        return count


# ---- the delivery loop -----------------------------------------------------------------------

@dataclass(slots=True)
class Claimed:
    id: uuid.UUID
    org_id: uuid.UUID
    webhook_id: uuid.UUID
    event: str
    event_id: str
    payload: Any
    attempts: int
    created_at: dt.datetime
    url: str
    secret_enc: bytes
    enabled: bool


_CLAIM = """
WITH room AS (
    -- free slots of the endpoints with deliveries in flight in this process ($3 for the others)
    SELECT * FROM unnest($4::uuid[], $6::int[]) AS r(webhook_id, free)
), ranked AS (
    SELECT d.id, row_number() OVER (PARTITION BY d.webhook_id ORDER BY d.next_attempt_at) AS n,
           COALESCE(room.free, $3) AS free
    FROM webhook_deliveries d LEFT JOIN room ON room.webhook_id = d.webhook_id
    WHERE d.org_id = $1 AND d.status = 'pending' AND d.next_attempt_at <= now()
), picked AS (
    SELECT d.id FROM webhook_deliveries d JOIN ranked r ON r.id = d.id
    WHERE r.n <= r.free AND d.status = 'pending' AND d.next_attempt_at <= now()
    ORDER BY d.next_attempt_at LIMIT $2
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d
SET next_attempt_at = now() + make_interval(secs => $5), attempts = d.attempts + 1, last_attempt_at = now()
FROM picked, webhooks w
WHERE d.id = picked.id AND w.id = d.webhook_id AND w.org_id = $1
RETURNING d.id, d.org_id, d.webhook_id, d.event, d.event_id, d.payload, d.attempts, d.created_at,
          w.url, w.secret_enc, w.enabled
"""

_DELIVERED = """
UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(), last_status = $3, last_error = NULL
WHERE org_id = $1 AND id = $2 AND status = 'pending'
"""

_FAILED_ATTEMPT = """
UPDATE webhook_deliveries
SET status = CASE WHEN $4::timestamptz IS NULL THEN 'failed' ELSE 'pending' END,
    next_attempt_at = COALESCE($4::timestamptz, next_attempt_at), last_status = $3, last_error = $5
WHERE org_id = $1 AND id = $2 AND status = 'pending'
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    status: int | None
    error: str | None


class DeliveryLoop:
    def __init__(self, config: Config, pool, *, encryptor: Encryptor | None = None, wake=None,
                 rand=random.random) -> None:
        self.config = config
        self.w = config.webhooks
        self.development = config.admin_api.development
        self.pool = pool
        self.encryptor = encryptor or Encryptor.from_config(config)
        self.wake = wake or asyncio.Event()
        self.rand = rand
        self._global = asyncio.Semaphore(self.w.concurrency)
        self._inflight: dict[uuid.UUID, int] = {}
        self._tasks: set[asyncio.Task] = set()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(resolver=PublicResolver(self.development), limit=self.w.concurrency,
                                         limit_per_host=self.w.per_endpoint, ttl_dns_cache=60,
                                         enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self.w.timeout),
            headers={"User-Agent": USER_AGENT}, auto_decompress=False, trust_env=False)

    async def close(self, grace: float = 0.0) -> None:
        """Stop: in-flight attempts get ``grace`` seconds, then are cancelled (their lease
        expires and another process retries them: at-least-once)."""
        if self._tasks:
            done, pending = await asyncio.wait(set(self._tasks), timeout=grace) if grace else (set(), set(self._tasks))
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def busy(self) -> int:
        return len(self._tasks)

    def inflight(self, webhook_id) -> int:
        return self._inflight.get(webhook_id, 0)

    def _room(self) -> tuple[list[uuid.UUID], list[int]]:
        """Endpoints with deliveries in flight and how many more each may take."""
        ids = list(self._inflight)
        return ids, [max(0, self.w.per_endpoint - self._inflight[w]) for w in ids]

    async def poll(self) -> int:
        """Claim what is due (within free capacity) and start sending it; returns how many."""
        free = self.w.concurrency - len(self._tasks)
        if free <= 0:
            return 0
        async with self.pool.acquire() as conn:
            orgs = [r[0] for r in await conn.fetch("SELECT convot_due_webhook_orgs($1)", ORGS_PER_POLL)]
        started = 0
        for org in orgs:
            if free <= 0:
                break
            busy, room = self._room()
            async with scoped(self.pool, org_id=org) as conn:
                rows = await conn.fetch(_CLAIM, org, free, self.w.per_endpoint, busy,
                                        float(self.w.timeout + LEASE_MARGIN), room)
            for row in rows:
                claimed = Claimed(**dict(row))
                self._inflight[claimed.webhook_id] = self._inflight.get(claimed.webhook_id, 0) + 1
                task = asyncio.get_running_loop().create_task(self._deliver(claimed))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                free -= 1
                started += 1
        return started

    async def _deliver(self, d: Claimed) -> None:
        try:
            async with self._global:
                outcome = await self.attempt(d)
            await self.record(d, outcome)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never lose the loop over one delivery; the lease brings it back
            log.error("webhook delivery bookkeeping failed", extra={"error": type(exc).__name__})
        finally:
            n = self._inflight.get(d.webhook_id, 1) - 1
            if n <= 0:
                self._inflight.pop(d.webhook_id, None)
            else:
                self._inflight[d.webhook_id] = n

    async def attempt(self, d: Claimed) -> Outcome:
        if not d.enabled:
            return Outcome(False, None, "webhook_disabled")
        problem = url_problem(d.url, self.development)
        if problem is not None:
            return Outcome(False, None, "url_refused")
        try:
            secret = self.encryptor.decrypt(d.secret_enc, row_aad("webhooks", "secret_enc", d.org_id,
                                                                  d.webhook_id)).decode()
        except CryptoError:
            return Outcome(False, None, "secret_unreadable")
        body = orjson.dumps(d.payload)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, int(time.time()), body),
            "Convot-Event": d.event,
            "Convot-Event-Id": d.event_id,
            "Convot-Delivery-Id": str(d.id),
            "Convot-Attempt": str(d.attempts),
        }
        started = time.perf_counter()
        try:
            async with self._session.post(d.url, data=body, headers=headers, allow_redirects=False) as resp:
                await resp.content.read(RESPONSE_READ_LIMIT)  # drain a little; the answer body is not kept
                status = resp.status
        except asyncio.TimeoutError:
            attempts_total.labels("timeout").inc()
            return Outcome(False, None, "timeout")
        except aiohttp.ClientError as exc:
            attempts_total.labels("error").inc()
            return Outcome(False, None, _error_name(exc))
        except OSError as exc:
            attempts_total.labels("error").inc()
            return Outcome(False, None, _error_name(exc))
        finally:
            attempt_seconds.observe(time.perf_counter() - started)
        ok = 200 <= status < 300
        attempts_total.labels("ok" if ok else "http_error").inc()
        return Outcome(ok, status, None if ok else f"http_{status}")

    async def record(self, d: Claimed, outcome: Outcome) -> None:
        async with scoped(self.pool, org_id=d.org_id) as conn:
            if outcome.ok:
                await conn.execute(_DELIVERED, d.org_id, d.id, outcome.status)
                return
            if outcome.error == "webhook_disabled" or outcome.error == "url_refused":
                retry_at = None     # nothing will change by retrying
            else:
                retry_at = after_failure(d.attempts, d.created_at, dt.datetime.now(dt.timezone.utc),
                                         base=self.w.retry_base, cap=self.w.retry_max,
                                         give_up_after=self.w.give_up_after, rand=self.rand())
            await conn.execute(_FAILED_ATTEMPT, d.org_id, d.id, outcome.status, retry_at,
                               (outcome.error or "")[:MAX_ERROR_LENGTH] or None)
        if retry_at is None:
            log.info("webhook delivery failed for good", extra={"event": d.event, "attempts": d.attempts,
                                                                  "error": outcome.error})

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                await self.poll()
                backoff = 0.5
            except _PG_DOWN as exc:
                log.warning("webhook delivery: PostgreSQL unavailable (%s)", type(exc).__name__)
                await _sleep_or(stop, backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            self.wake.clear()
            await _wait_any(stop, self.wake, self.w.poll_interval)


def _error_name(exc: BaseException) -> str:
    """A short, stable description of a transport error (never the remote's text)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError) or isinstance(exc, aiohttp.ClientSSLError):
        return "tls_error"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect_error"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "disconnected"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "bad_response"
    if isinstance(exc, OSError):
        return "connect_error"
    return "transport_error"


async def _sleep_or(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def run_dispatcher(dispatcher: StreamDispatcher, stop: asyncio.Event) -> None:
    backoff = 0.2
    while not stop.is_set():
        try:
            await dispatcher.step()
            backoff = 0.2
            continue
        except (*_REDIS_DOWN, *_PG_DOWN, ResponseError) as exc:
            # entries stay pending in the group and are read again: nothing is lost
            log.warning("webhook dispatcher: backing store unavailable (%s)", type(exc).__name__)
        except Exception as exc:  # never let the loop die: log the type, back off, go on
            log.error("webhook dispatcher: unexpected error (%s)", type(exc).__name__)
        await _sleep_or(stop, backoff)
        backoff = min(backoff * 2, 5.0)
        dispatcher.group_reader.claim_soon()


async def run_webhooks(config: Config, pool, redis, stop: asyncio.Event) -> None:
    """The engine worker's webhook side: dispatcher + delivery loop until ``stop`` is set."""
    wake = asyncio.Event()
    dispatcher = StreamDispatcher(config, pool, redis, wake=wake)
    delivery = DeliveryLoop(config, pool, wake=wake)
    while not stop.is_set():
        try:
            await dispatcher.setup()
            break
        except _REDIS_DOWN:
            await _sleep_or(stop, 1.0)
    await delivery.start()
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(run_dispatcher(dispatcher, stop), name="webhook-dispatcher"),
             loop.create_task(delivery.run(stop), name="webhook-delivery")]
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # in-flight attempts may finish briefly; the rest are retried by another process
        await delivery.close(grace=min(STOP_GRACE_SECONDS, config.webhooks.timeout))
