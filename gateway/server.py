"""The websocket gateway: thin I/O around the pure core (protocol, authz, errors).

One process holds many sockets.  Per process:

* a :class:`Fanout` with the index organisation -> agent sockets and contact -> shopper
  sockets, one stream reader for the shards its sockets need (XREAD BLOCK from the last id
  seen), and one pub/sub connection for ephemeral events and revocations;
* each stream entry is framed once (the JSON bytes from Redis plus a WebSocket header) and
  the same bytes are written to every recipient's transport; a socket whose write buffer
  exceeds gateway.send_buffer_bytes is closed with 4001 and never awaited;
* sends go through the engine's ShardRouter (batched per loop turn); the ack is written only
  after Redis executed the append.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict

import asyncpg
import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from websockets.protocol import State

from convot.config import Config
from convot.db import create_pool, scoped
from convot.logs import connection_id
from convot.metrics import count_rate_limited, start_metrics_server, stop_metrics_server, watch_pool
from convot.tokens import LEEWAY_SECONDS, TokenError, TokenVerifier
from engine import keys
from engine.availability import Presence, SocketPresence
from engine.client import KEEP, EngineClient, create_redis
from engine.errors import EngineError
from engine.batch import TurnBatcher
from engine.events import is_uuid
from engine.resp import StreamReaderConnection
from engine.events import ack_frame, error_frame
from gateway import authz
from gateway import metrics as m
from gateway import protocol as p
from gateway.errors import ERRORS, GatewayError
from gateway import websocket
from gateway.websocket import SocketClosed, WebSocket

log = logging.getLogger("convot.gateway")

_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
_PG_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
            asyncpg.TooManyConnectionsError, TimeoutError)
_ENGINE_CODES = {"not_found": "not_found", "invalid": "bad_frame", "unavailable": "unavailable",
                 "conflict": "internal", "internal": "internal"}
SUBJECT_CACHE_SECONDS = 30.0
READ_STORE_TIMEOUT = 5.0          # a hung PostgreSQL holds read positions back at most this long
READ_STORE_WARN_EVERY = 30.0      # one warning per this many seconds while storing fails
READ_RETRY_FIRST = 0.5            # a read of a conversation PostgreSQL does not have yet: again after this,
READ_RETRY_GIVE_UP = 30.0         # doubling, for at most this long after the first miss,
READ_RETRY_HELD = 10_000          # and for at most this many positions at once (beyond: dropped, counted)
CONVERSATION_CACHE = 100_000
MAX_TRACKED_CONVERSATIONS = 1000
_OPEN = State.OPEN
LISTEN_BACKLOG = 4096      # capped by net.core.somaxconn


class Conn(WebSocket):
    """One socket (gateway/websocket.py does its WebSocket protocol) and what the gateway
    keeps for it: the principal once authenticated, and what fan-out needs, nothing more."""

    __slots__ = ("id", "principal", "sm", "bucket", "org_key", "contact_key", "seen",
                 "closed", "expiry", "gateway", "buffer_limit", "resume_cap", "outbox")

    def __init__(self, gateway: "Gateway"):
        super().__init__(gateway.ws_settings)
        self.id = os.urandom(6).hex()
        self.gateway = gateway
        self.principal: authz.Principal | None = None
        self.sm = p.StateMachine()
        g = gateway.config.gateway
        self.bucket = p.TokenBucket(g.rate_limit_per_second, g.rate_limit_burst)
        self.buffer_limit = g.send_buffer_bytes
        self.resume_cap = g.send_queue_frames
        self.org_key = b""
        self.contact_key = b""
        self.seen: dict[bytes, object] | None = None   # conv -> last seq, or a list while resuming
        self.closed = False
        self.expiry: asyncio.TimerHandle | None = None
        self.outbox: list[bytes] = []      # frames written during this loop iteration (corked)

    def write(self, data: bytes) -> None:
        """Queue one complete WebSocket frame; never blocks, never awaits.

        Frames are corked: everything written to a socket during one event-loop iteration
        (an ack, the stream events of every batch read meanwhile, ephemeral events) leaves in
        ONE ``transport.write`` -- one send syscall -- when the gateway flushes its dirty
        sockets at the start of the next iteration (``Gateway.flush``), in the order written."""
        if self.closed:
            return
        out = self.outbox
        out.append(data)
        if len(out) == 1:
            self.gateway.mark_dirty(self)

    def send(self, payload: bytes, kind: str) -> None:
        self.write(p.text_frame(payload))
        m.frame_out(kind).inc()

    def flush(self) -> None:
        out = self.outbox
        if not out:
            return
        self.outbox = []
        if self.closed or self.protocol.state is not _OPEN:
            return
        self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self.transport.get_write_buffer_size() > self.buffer_limit:
            self.gateway.kick(self, "slow_consumer")

    async def write_paced(self, data: bytes) -> None:
        """A reply the client asked for (resume, history): may exceed the buffer bound, so it
        is written and then awaited until the socket has taken it below the bound, instead
        of counting as a slow consumer.  Only the requesting socket's own handler waits."""
        self.flush()                     # what was queued before goes first
        if self.closed or self.protocol.state is not _OPEN:
            return
        self.transport.write(data)
        await self.drain()               # returns at once below the high-water mark (buffer_limit / 2)

    def deliver_message(self, conv: bytes, seq: int, data: bytes) -> None:
        seen = self.seen
        if seen is not None:
            state = seen.get(conv)
            if state is not None:
                if state.__class__ is list:          # resuming: hold live events until the replay is out
                    if len(state) >= self.resume_cap:
                        self.gateway.kick(self, "slow_consumer")
                        return
                    state.append((seq, data))
                    return
                if seq <= state:
                    return                           # already replayed
                seen[conv] = seq
        self.write(data)


class Fanout:
    """Index of sockets and the readers that feed them."""

    def __init__(self, gateway: "Gateway"):
        self.g = gateway
        self.shards = gateway.config.engine.shards
        self.agents: dict[bytes, set[Conn]] = {}
        self.shoppers: dict[bytes, set[Conn]] = {}
        self.by_org: dict[str, set[Conn]] = {}
        self.shard_refs: dict[int, int] = {}
        self.positions: dict[bytes, bytes] = {}       # stream key -> last id read
        self.latency: dict[bytes, object] = {}        # stream key -> its shard's latency histogram
        self.wake = asyncio.Event()
        self.reader_redis = None
        self.reader_id: int | None = None
        self.blocked = False

    # -- index ---------------------------------------------------------------------------------
    async def register(self, conn: Conn) -> None:
        pr = conn.principal
        shard = keys.shard_of(pr.org_id, self.shards)
        if self.shard_refs.get(shard, 0) == 0:
            await self._start_shard(shard)
        self.shard_refs[shard] = self.shard_refs.get(shard, 0) + 1
        conn.org_key = pr.org_id.encode()
        if pr.is_shopper:
            conn.contact_key = pr.subject.encode()
            self.shoppers.setdefault(conn.contact_key, set()).add(conn)
        else:
            self.agents.setdefault(conn.org_key, set()).add(conn)
        self.by_org.setdefault(pr.org_id, set()).add(conn)

    def unregister(self, conn: Conn) -> None:
        pr = conn.principal
        if pr is None or not conn.org_key:
            return
        index, key = (self.shoppers, conn.contact_key) if pr.is_shopper else (self.agents, conn.org_key)
        group = index.get(key)
        if group is not None:
            group.discard(conn)
            if not group:
                del index[key]
        group = self.by_org.get(pr.org_id)
        if group is not None:
            group.discard(conn)
            if not group:
                del self.by_org[pr.org_id]
        shard = keys.shard_of(pr.org_id, self.shards)
        self.shard_refs[shard] -= 1
        if self.shard_refs[shard] == 0:
            del self.shard_refs[shard]
            self.positions.pop(keys.stream(shard).encode(), None)
        conn.org_key = b""

    async def _start_shard(self, shard: int) -> None:
        """Start reading a shard from its current end, before the socket is told it is ready."""
        stream = keys.stream(shard).encode()
        if stream in self.positions:
            return
        last = await self.g.redis.xrevrange(stream, count=1)
        self.positions.setdefault(stream, last[0][0] if last else b"0-0")
        self.wake.set()
        if self.blocked and self.reader_id is not None:
            try:
                await self.g.redis.client_unblock(self.reader_id)
            except _REDIS_DOWN:
                pass

    # -- stream reader -------------------------------------------------------------------------
    async def read_streams(self) -> None:
        backoff = 0.1
        while True:
            if not self.positions:
                self.wake.clear()
                await self.wake.wait()
                continue
            try:
                if self.reader_id is None:
                    self.reader_id = await self.reader_redis.client_id()
                self.blocked = True
                reply = await self.reader_redis.xread(dict(self.positions), count=1000, block=1000)
                self.blocked = False
                backoff = 0.1
            except _REDIS_DOWN as exc:
                self.blocked = False
                self.reader_id = None
                log.warning("stream reader: Redis unavailable (%s)", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            for stream, entries in reply or ():
                if stream not in self.positions or not entries:
                    continue
                self.positions[stream] = entries[-1][0]
                latency = self.latency.get(stream)
                if latency is None:
                    latency = self.latency[stream] = m.delivery_latency.labels(keys.shard_of_stream(stream))
                self.deliver(entries, latency)

    def deliver(self, entries, latency) -> None:
        """Fan one stream batch out; ``latency``: the shard's delivery-latency histogram."""
        agents, shoppers = self.agents, self.shoppers
        now_ms = time.time() * 1000
        delivered = 0
        text_frame = p.text_frame
        for entry_id, f in entries:
            org = f[b"o"]
            targets = agents.get(org)
            contact = f[b"k"]
            shop = shoppers.get(contact) if contact and f[b"v"] != b"m" else None
            if targets is None and shop is None:
                continue
            latency.observe(max(0.0, now_ms - int(entry_id.split(b"-", 1)[0])) / 1000)
            if f[b"t"] == b"m":
                data = text_frame(f[b"f"])
                conv = f[b"c"]
                seq = int(f[b"s"])
                for conn in targets or ():
                    conn.deliver_message(conv, seq, data)
                for conn in shop or ():
                    conn.deliver_message(conv, seq, data)
            else:
                if targets:
                    data = text_frame(f[b"f"])
                    for conn in targets:
                        conn.write(data)
                if shop:
                    data = text_frame(f[b"fs"])
                    for conn in shop:
                        conn.write(data)
            delivered += len(targets or ()) + len(shop or ())
        m.events.inc(len(entries))
        if delivered:
            m.deliveries.inc(delivered)

    # -- pub/sub: ephemeral events and revocations ------------------------------------------------
    def deliver_ephemeral(self, data: bytes) -> None:
        try:
            org, contact, vis, sender, frame = data.split(b"|", 4)
        except ValueError:
            return
        framed = p.text_frame(frame)
        sender_id = sender.decode()
        if vis == b"o":
            recipients = self.by_org.get(org.decode(), ())
        else:
            recipients = list(self.agents.get(org, ()))
            if vis == b"a" and contact:
                recipients.extend(self.shoppers.get(contact, ()))
        for conn in recipients:
            if conn.id != sender_id:
                conn.write(framed)

    def control(self, event: dict) -> None:
        org = event.get("org")
        conns = list(self.by_org.get(org, ())) if isinstance(org, str) else [
            c for group in self.by_org.values() for c in group]
        for conn in conns:
            pr = conn.principal
            if pr is None:
                continue
            reason = authz.control_close(event, pr, pr.version)
            if reason:
                self.g.kick(conn, reason)


class ReadRetries:
    """Read positions waiting for their conversation to reach PostgreSQL (pure: the caller
    passes the time).  A member's first read of a brand-new conversation usually arrives before
    the engine workers persisted it; convot_store_read_positions (migration 0603) hands such
    positions back and they are submitted again after ``first`` seconds, then twice as long each
    time, the last attempt ``give_up`` seconds after the first miss.  At most ``capacity`` are
    held: memory stays bounded whatever the clients send.  Keys are (org, member, conversation);
    a key held keeps the highest seq seen for it."""

    def __init__(self, *, first: float = READ_RETRY_FIRST, give_up: float = READ_RETRY_GIVE_UP,
                 capacity: int = READ_RETRY_HELD):
        self.first, self.give_up, self.capacity = first, give_up, capacity
        # key -> [seq, first miss, current delay, due (inf while submitted)]
        self.held: dict[tuple, list] = {}

    def __len__(self) -> int:
        return len(self.held)

    def highest(self, key: tuple, seq: int) -> int:
        """``seq`` or the position held for ``key``, whichever is higher (a retry never lowers)."""
        entry = self.held.get(key)
        return seq if entry is None or entry[0] < seq else entry[0]

    def missed(self, key: tuple, seq: int, now: float) -> bool:
        """Hold a position whose conversation PostgreSQL does not have (yet), or schedule the next
        attempt of one held; False when it is given up instead (too old, or too many held)."""
        entry = self.held.get(key)
        if entry is None:
            if len(self.held) >= self.capacity:
                return False
            self.held[key] = [seq, now, self.first, now + self.first]
            return True
        delay = min(entry[2] * 2, entry[1] + self.give_up - now)
        if delay <= 0:
            del self.held[key]
            return False
        entry[0] = max(entry[0], seq)
        entry[2], entry[3] = delay, now + delay
        return True

    def settled(self, key: tuple) -> None:
        """Stored (or failed for good): no longer held."""
        self.held.pop(key, None)

    def due(self, now: float) -> list[tuple]:
        """(org, member, conversation, seq) of every position due; each is then in flight until
        its store answers (missed or settled), so it is never submitted twice at once."""
        out = []
        for key, entry in self.held.items():
            if entry[3] <= now:
                entry[3] = float("inf")
                out.append((*key, entry[0]))
        return out

    def next_due(self) -> float | None:
        return min((e[3] for e in self.held.values() if e[3] != float("inf")), default=None)


class Gateway:
    def __init__(self, config: Config, *, redis, pool, engine: EngineClient, verifier: TokenVerifier):
        self.config = config
        self.redis = redis
        self.pool = pool
        self.engine = engine
        self.verifier = verifier
        self.limits = p.Limits(config.gateway.max_message_chars)
        self.fanout = Fanout(self)
        self.conns: set[Conn] = set()
        self.conversations: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self.subjects: dict[tuple, tuple[float, str | None]] = {}
        self.draining = False
        self.presence = SocketPresence(Presence(config, redis, pool))   # member sockets -> availability
        g = config.gateway
        self.ws_settings = websocket.Settings(
            handler=self.handler, max_size=g.max_frame_bytes, max_queue=4, open_timeout=10.0, ping_interval=20.0,
            close_timeout=2.0, write_high_water=g.send_buffer_bytes // 2,
            plain_http={"/healthz": (200, "ok\n")})      # load balancers' health check on the socket port
        self.dirty: list[Conn] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        # Authentication lookups of one loop turn share one round trip each (engine/batch.py):
        # a connection storm costs one MGET and one PostgreSQL call per turn, not per socket.
        self.lookup_conn = None if config.redis.cluster else StreamReaderConnection(config.redis.url)
        self.revocations = TurnBatcher(self._revocation_records)
        self.subject_checks = TurnBatcher(self._subject_problems)
        # Members' read positions: stored one round trip per loop turn, never awaited by the
        # receipt (live chat does not depend on PostgreSQL).
        self.read_positions = TurnBatcher(self._store_read_positions)
        self._read_store_warned = float("-inf")
        self.read_retries = ReadRetries()
        self._read_retry_timer: asyncio.TimerHandle | None = None

    # -- corked writes ---------------------------------------------------------------------------
    def mark_dirty(self, conn: Conn) -> None:
        if not self.dirty:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._loop.call_soon(self.flush)
        self.dirty.append(conn)

    def flush(self) -> None:
        """Write every socket's queued frames: one write per socket per loop iteration."""
        dirty, self.dirty = self.dirty, []
        for conn in dirty:
            conn.flush()

    # -- lifecycle of one socket -----------------------------------------------------------------
    async def handler(self, conn: Conn) -> None:
        """The socket's one task, from the accepted handshake until it closes."""
        token = connection_id.set(conn.id)
        self.conns.add(conn)
        try:
            await self._session(conn)
        except SocketClosed:
            pass
        except GatewayError as exc:
            self._close(conn, exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("socket handler failed")
            self._close(conn, GatewayError("server_error"))
        finally:
            self.conns.discard(conn)
            conn.closed = True
            if conn.expiry is not None:
                conn.expiry.cancel()
            if conn.principal is not None and conn.sm.state is not p.ConnState.AUTHENTICATING:
                m.connections.labels(_role_label(conn.principal)).dec()
                self.fanout.unregister(conn)
                self.presence.disconnected(conn.id)
                if conn.principal.is_shopper and not self.draining:
                    self._presence_contact(conn.principal, "offline")
            connection_id.reset(token)

    def _close(self, conn: Conn, exc: GatewayError) -> None:
        code = exc.close_code or ERRORS["server_error"].close_code
        m.closes.labels(str(code)).inc()
        if exc.code != "slow_consumer":
            conn.flush()                     # frames queued before the error go out before the close
        if exc.code == "auth_failed":
            m.auth_failures.labels(exc.detail.split(":")[0][:32] if exc.detail else "unknown").inc()
        conn.closed = True
        conn.close(code, exc.close_reason)       # never waits: the peer has close_timeout to answer

    def kick(self, conn: Conn, code: str) -> None:
        """Close a socket from synchronous code (fan-out, timers, revocations)."""
        if conn.closed:
            return
        if code == "slow_consumer":
            m.slow_consumers.inc()
        conn.closed = True
        self._close(conn, GatewayError(code))

    async def _session(self, conn: Conn) -> None:
        g = self.config.gateway
        try:
            raw = await conn.recv(g.auth_timeout)
        except TimeoutError:
            raise GatewayError("auth_timeout") from None
        try:
            request = p.parse(raw, self.limits)
        except GatewayError as exc:
            raise GatewayError("protocol_violation", f"first frame: {exc.code}") from None
        conn.sm.accepts(request)
        await self._authenticate(conn, request)
        while True:
            raw = await conn.recv()
            if conn.closed:
                return
            if not conn.bucket.take():
                if conn.bucket.flooding:
                    count_rate_limited("socket_flood")
                    raise GatewayError("flood")
                count_rate_limited("socket_frames")
                m.errors.labels("rate_limited").inc()
                conn.send(error_frame("rate_limited", ERRORS["rate_limited"].description), "error")
                continue
            try:
                request = p.parse(raw, self.limits)
                m.frame_in(type(request).__name__).inc()
                conn.sm.accepts(request)
                await self.dispatch(conn, request)
            except GatewayError as exc:
                if exc.close_code is not None:
                    raise
                m.errors.labels(exc.code).inc()
                conn.send(error_frame(exc.code, exc.detail, exc.ref), "error")

    async def _authenticate(self, conn: Conn, request: p.Authenticate) -> None:
        try:
            claims = self.verifier.verify(request.token)
        except TokenError as exc:
            raise GatewayError("auth_failed", exc.reason) from None
        await self._check_subject(claims)
        conn.principal = authz.Principal.from_claims(claims)
        try:
            await self.fanout.register(conn)
        except _REDIS_DOWN:
            conn.principal = None
            raise GatewayError("backend_unavailable") from None
        conn.sm.to(p.ConnState.READY)
        m.connections.labels(_role_label(conn.principal)).inc()
        self._schedule_expiry(conn, claims.exp)
        g = self.config.gateway
        conn.send(orjson.dumps({
            "type": "ready", "ref": request.ref, "connection_id": conn.id, "org_id": claims.org,
            "role": claims.role, "subject": claims.sub, "expires_at": claims.exp,
            "server_time": int(time.time() * 1000),
            "limits": {"max_frame_bytes": g.max_frame_bytes, "max_message_chars": g.max_message_chars,
                       "rate_limit_per_second": g.rate_limit_per_second, "rate_limit_burst": g.rate_limit_burst},
        }), "ready")
        if claims.role == "shopper":
            self._presence_contact(conn.principal, "online")
        else:
            self.presence.connected(conn.id, claims.org, claims.sub)

    def _schedule_expiry(self, conn: Conn, exp: int) -> None:
        if conn.expiry is not None:
            conn.expiry.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, exp + LEEWAY_SECONDS - time.time())
        conn.expiry = loop.call_later(delay, self.kick, conn, "token_expired")

    async def _check_subject(self, claims) -> None:
        """Revocation records (always), then the subject's existence (cached; skipped if PG is down)."""
        try:
            records = await self.revocations.submit((keys.revoked_token(claims.jti),
                                                     keys.revoked_subject(claims.org, claims.sub),
                                                     keys.revoked_org(claims.org)))
        except _REDIS_DOWN:
            raise GatewayError("backend_unavailable") from None
        refused = authz.revocation(claims, *records)
        if refused:
            raise GatewayError("auth_failed", "revoked" if refused != "reauthenticate" else "stale_token")
        key = (claims.org, claims.sub, claims.role, claims.version, claims.app_id)
        cached = self.subjects.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            problem = cached[1]
        else:
            try:
                problem = await self._subject_problem(claims)
            except _PG_DOWN:
                log.warning("authenticate: PostgreSQL unavailable, subject check skipped (signature and revocations checked)")
                return
            if len(self.subjects) > 50_000:
                self.subjects.clear()
            self.subjects[key] = (now + SUBJECT_CACHE_SECONDS, problem)
        if problem:
            raise GatewayError("auth_failed", problem)

    async def _subject_problem(self, claims) -> str | None:
        if self.pool is None:
            return None
        if not all(is_uuid(v) for v in (claims.org, claims.sub, claims.contact_id or claims.sub,
                                         claims.app_id or claims.sub)):
            return "wrong_organisation"      # signed, but not ids we issue: never a row
        return await self.subject_checks.submit(
            {"org": claims.org, "role": claims.role, "sub": claims.sub, "contact": claims.contact_id,
             "app": claims.app_id, "version": claims.version})

    async def _subject_problems(self, checks: list[dict]) -> list:
        """One round trip for every subject check of a loop turn (convot_subject_problems,
        migration 0601: the row-level-security scope is switched per check inside)."""
        async with self.pool.acquire() as conn:
            return await conn.fetchval("SELECT convot_subject_problems($1::jsonb)", checks)

    async def _store_read_positions(self, items: list[tuple]) -> list:
        """Members' read positions of one loop turn in one round trip (convot_store_read_positions,
        migration 0603: the row-level-security scope is switched per organisation inside, and a
        position never goes down).  Duplicates of the turn are coalesced to their highest seq,
        and with a position held for retry.  A position whose conversation PostgreSQL does not
        have yet is held in ``read_retries`` and submitted again a little later.
        Never raises: a failure (PostgreSQL down) is logged, without ids, and the positions of
        this turn are dropped -- the member's next read carries a position at least as high."""
        highest: dict[tuple, int] = {}
        for org, member, conversation, seq in items:
            if not (is_uuid(org) and is_uuid(member)):
                continue                 # signed, but not ids we issue: never a row (and never a failed batch)
            key = (org, member, conversation)
            if seq > highest.get(key, -1):
                highest[key] = seq
        if not highest:
            return [None] * len(items)
        for key, seq in highest.items():
            highest[key] = self.read_retries.highest(key, seq)
        keys_ = list(highest)
        try:
            async with self.pool.acquire(timeout=READ_STORE_TIMEOUT) as conn:
                later = await conn.fetchval(
                    "SELECT convot_store_read_positions($1::jsonb)",
                    [{"org": o, "member": u, "conversation": c, "seq": highest[(o, u, c)]} for o, u, c in keys_],
                    timeout=READ_STORE_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            for key in keys_:
                self.read_retries.settled(key)
            m.read_positions.labels("dropped").inc(len(highest))
            now = time.monotonic()
            if now - self._read_store_warned >= READ_STORE_WARN_EVERY:
                self._read_store_warned = now
                log.warning("read positions: not stored (%s); %d in this batch dropped", type(exc).__name__,
                            len(highest))
            return [None] * len(items)
        if not isinstance(later, list):
            later = []                   # migration 0603 not applied yet: 0602 answers a count
        again = {keys_[i] for i in later if 0 <= i < len(keys_)}
        now = asyncio.get_running_loop().time()
        dropped = 0
        for key in keys_:
            if key in again:
                if not self.draining and self.read_retries.missed(key, highest[key], now):
                    continue                 # held: submitted again when due
                dropped += 1
            self.read_retries.settled(key)
        m.read_positions.labels("stored").inc(len(keys_) - len(again))
        if dropped:
            m.read_positions.labels("dropped").inc(dropped)
        self._schedule_read_retry()
        return [None] * len(items)

    def _schedule_read_retry(self) -> None:
        """One timer for the earliest position held for retry."""
        due = self.read_retries.next_due()
        if due is None:
            return
        if self._read_retry_timer is not None:
            if self._read_retry_timer.when() <= due:
                return
            self._read_retry_timer.cancel()
        self._read_retry_timer = asyncio.get_running_loop().call_at(due, self._retry_reads)

    def _retry_reads(self) -> None:
        self._read_retry_timer = None
        if self.draining:                # shutting down: the pool goes away
            waiting = self.read_retries.due(float("inf"))
            for org, member, conversation, _ in waiting:
                self.read_retries.settled((org, member, conversation))
            if waiting:
                m.read_positions.labels("dropped").inc(len(waiting))
            return
        for item in self.read_retries.due(asyncio.get_running_loop().time()):
            self.read_positions.submit(item)      # never fails: _store_read_positions logs
        self._schedule_read_retry()

    async def _revocation_records(self, triples: list[tuple]) -> list:
        """The revocation records of every socket authenticating in a loop turn: one MGET."""
        if self.lookup_conn is None:        # Redis Cluster: the keys live in different slots
            return await asyncio.gather(*(self.redis.mget(*t) for t in triples), return_exceptions=True)
        (values,) = await self.lookup_conn.pipeline([("MGET", *[k for t in triples for k in t])])
        if isinstance(values, Exception):
            raise ConnectionError(f"revocation lookup: {values}")
        return [values[i:i + 3] for i in range(0, len(values), 3)]

    # -- frames ----------------------------------------------------------------------------------
    async def dispatch(self, conn: Conn, req) -> None:
        handler = _DISPATCH[type(req)]
        try:
            await handler(self, conn, req)
        except EngineError as exc:
            err = GatewayError(_ENGINE_CODES[exc.code])
            err.ref = req.ref
            raise err from None
        except GatewayError as exc:
            if exc.ref is None:
                exc.ref = req.ref
            raise

    async def on_send(self, conn: Conn, req: p.Send) -> None:
        pr = conn.principal
        type_, author_kind = authz.message_type_for(pr, req.kind)
        if req.conversation_id is None:
            authz.may_start_conversation(pr)
            request = self.engine.start_conversation_nowait(pr.org_id, pr.subject, pr.app_id, body=req.body,
                                                            client_msg_id=req.client_msg_id, meta=req.meta)
        else:
            request = self.engine.send_message_nowait(pr.org_id, req.conversation_id, type=type_,
                                                      author_kind=author_kind, author_id=pr.subject, body=req.body,
                                                      client_msg_id=req.client_msg_id, meta=req.meta,
                                                      contact_id=pr.contact_id)
        ack = await self.engine.append(request)
        m.appended.inc()
        conn.send(ack_frame(req.ref, ack.conversation_id, ack.id, ack.seq, ack.client_msg_id, ack.created_at,
                            ack.duplicate), "ack")

    async def _owner(self, pr: authz.Principal, conversation_id: str) -> tuple[str, str]:
        """(org, contact) of a conversation, checked against the principal; cached (immutable)."""
        owner = self.conversations.get(conversation_id)
        if owner is None:
            c = await self.engine.conversation(pr.org_id, conversation_id)
            if c is None:
                raise GatewayError("not_found")
            owner = (c.org_id, c.contact_id)
            self.conversations[conversation_id] = owner
            if len(self.conversations) > CONVERSATION_CACHE:
                self.conversations.popitem(last=False)
        authz.require_access(pr, *owner)
        return owner

    async def on_typing(self, conn: Conn, req: p.Typing) -> None:
        pr = conn.principal
        _, contact = await self._owner(pr, req.conversation_id)
        frame = orjson.dumps({"type": "typing", "conversation_id": req.conversation_id,
                              "author": {"kind": _kind(pr), "id": pr.subject}, "active": req.active})
        await self.engine.publish_ephemeral(pr.org_id, frame, contact_id=contact,
                                            members_only=pr.is_shopper or req.note, sender=conn.id)

    async def on_read(self, conn: Conn, req: p.Read) -> None:
        pr = conn.principal
        _, contact = await self._owner(pr, req.conversation_id)
        if not pr.is_shopper and self.pool is not None:
            # Recorded in the background (the future never fails: _store_read_positions logs).
            self.read_positions.submit((pr.org_id, pr.subject, req.conversation_id, req.seq))
        frame = orjson.dumps({"type": "read", "conversation_id": req.conversation_id,
                              "reader": {"kind": _kind(pr), "id": pr.subject}, "seq": req.seq})
        await self.engine.publish_ephemeral(pr.org_id, frame, contact_id=contact, members_only=pr.is_shopper,
                                            sender=conn.id)

    async def on_presence(self, conn: Conn, req: p.Presence) -> None:
        pr = conn.principal
        authz.require_member(pr)
        # The member's availability choice: stored, then their effective state and the team's
        # summary go to every socket of the organisation (engine/availability.py).
        try:
            if not await self.presence.presence.choose(pr.org_id, pr.subject, req.state):
                raise GatewayError("not_found")
        except _PG_DOWN:
            raise GatewayError("unavailable") from None
        conn.send(orjson.dumps({"type": "ok", "ref": req.ref}), "ok")

    def _presence_contact(self, pr: authz.Principal, state: str) -> None:
        """A shopper came or went: told to the organisation's members, best effort (no task: a
        reconnect wave announces thousands; engine.close() flushes what is queued)."""
        frame = orjson.dumps({"type": "presence", "subject": {"kind": "contact", "id": pr.subject}, "state": state})
        self.engine.publish_ephemeral_nowait(pr.org_id, frame, members_only=True).add_done_callback(_retrieved)

    async def on_resume(self, conn: Conn, req: p.Resume) -> None:
        pr = conn.principal
        if conn.seen is None:
            conn.seen = {}
        if len(conn.seen) + len(req.conversations) > MAX_TRACKED_CONVERSATIONS:
            raise GatewayError("bad_frame", "field conversations (too many tracked)")
        done: dict[str, int] = {}
        incomplete: list[str] = []
        missing: list[str] = []
        for conv, after in req.conversations.items():
            key = conv.encode()
            previous = conn.seen.get(key)
            if previous.__class__ is list:
                raise GatewayError("bad_frame", "field conversations (already resuming)")
            conn.seen[key] = []                 # hold live events for this conversation
            try:
                frames, last, complete = await self.engine.missed(
                    pr.org_id, conv, after, contact_id=pr.contact_id, include_notes=not pr.is_shopper)
            except EngineError as exc:
                held = conn.seen.pop(key)
                if previous is not None:
                    conn.seen[key] = previous
                for _, data in held:
                    conn.write(data)
                if exc.code == "not_found":
                    missing.append(conv)
                    continue
                raise
            if conn.closed:
                return
            for frame in frames:
                await conn.write_paced(p.text_frame(frame))
            held = conn.seen[key]
            last = max(last, after)
            for seq, data in held:
                if seq > last:
                    conn.write(data)
                    last = seq
            conn.seen[key] = last
            done[conv] = last
            if not complete:
                incomplete.append(conv)
        conn.send(orjson.dumps({"type": "resumed", "ref": req.ref, "conversations": done,
                                "incomplete": incomplete, "not_found": missing}), "resumed")

    async def on_history(self, conn: Conn, req: p.History) -> None:
        pr = conn.principal
        items, more = await self.engine.history(pr.org_id, req.conversation_id, before_seq=req.before_seq,
                                                limit=req.limit, contact_id=pr.contact_id,
                                                include_notes=not pr.is_shopper)
        await conn.write_paced(p.text_frame(
            b'{"type":"history","ref":' + orjson.dumps(req.ref) + b',"conversation_id":"'
            + req.conversation_id.encode() + b'","more":' + (b"true" if more else b"false")
            + b',"messages":[' + b",".join(items) + b"]}"))
        m.frame_out("history").inc()

    async def on_update(self, conn: Conn, req: p.UpdateConversation) -> None:
        pr = conn.principal
        authz.may_update(pr, delete=req.delete)
        actor = ("member", pr.subject)
        if req.delete:
            await self.engine.delete_conversation(pr.org_id, req.conversation_id, actor=actor)
        else:
            assignee = KEEP
            if not req.keeps_assignee:
                assignee = req.assignee_id
                if assignee is not None:
                    await self._require_member(pr.org_id, assignee)
            await self.engine.update_conversation(pr.org_id, req.conversation_id, status=req.status,
                                                  assignee_id=assignee, tags=req.tags, add_tags=req.add_tags,
                                                  remove_tags=req.remove_tags, actor=actor)
        conn.send(orjson.dumps({"type": "ok", "ref": req.ref}), "ok")

    async def _require_member(self, org_id: str, user_id: str) -> None:
        if self.pool is None:
            raise GatewayError("unavailable")
        try:
            async with scoped(self.pool, org_id=org_id) as c:
                found = await c.fetchval("SELECT EXISTS (SELECT 1 FROM members WHERE org_id = $1 AND user_id = $2)",
                                         org_id, user_id)
        except _PG_DOWN:
            raise GatewayError("unavailable") from None
        if not found:
            raise GatewayError("bad_frame", "field assignee_id (not a member)")

    async def on_delete_message(self, conn: Conn, req: p.DeleteMessage) -> None:
        pr = conn.principal
        authz.require_member(pr)
        await self.engine.delete_message(pr.org_id, req.conversation_id, req.seq, actor=("member", pr.subject),
                                         authorize=lambda message: authz.may_delete_message(pr, message))
        conn.send(orjson.dumps({"type": "ok", "ref": req.ref}), "ok")

    async def on_refresh(self, conn: Conn, req: p.RefreshToken) -> None:
        try:
            claims = self.verifier.verify(req.token)
        except TokenError as exc:
            m.auth_failures.labels(exc.reason).inc()
            raise GatewayError("token_mismatch", f"refused: {exc.reason}") from None
        authz.may_refresh(conn.principal, claims)
        try:
            await self._check_subject(claims)
        except GatewayError as exc:
            raise GatewayError("token_mismatch", f"refused: {exc.detail}") from None
        conn.principal = authz.Principal.from_claims(claims)
        self._schedule_expiry(conn, claims.exp)
        conn.send(orjson.dumps({"type": "token.refreshed", "ref": req.ref, "expires_at": claims.exp}), "token")

    async def on_ping(self, conn: Conn, req: p.Ping) -> None:
        conn.send(orjson.dumps({"type": "pong", "ref": req.ref, "server_time": int(time.time() * 1000)}), "pong")

    # -- background readers ------------------------------------------------------------------------
    async def read_pubsub(self) -> None:
        channels = [keys.CONTROL_CHANNEL] + [keys.ephemeral_channel(s) for s in range(self.config.engine.shards)]
        backoff = 0.1
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*channels)
                backoff = 0.1
                async for msg in pubsub.listen():
                    if msg.get("type") != "message":
                        continue
                    channel = msg["channel"]
                    if channel == b"cv:control":
                        try:
                            event = orjson.loads(msg["data"])
                        except orjson.JSONDecodeError:
                            continue
                        if isinstance(event, dict):
                            self.fanout.control(event)
                    else:
                        self.fanout.deliver_ephemeral(msg["data"])
            except _REDIS_DOWN as exc:
                log.warning("pub/sub: Redis unavailable (%s)", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass

    async def drain(self) -> None:
        """Let in-flight sends finish and their acks go out; the caller closes the sockets."""
        self.draining = True
        for conn in list(self.conns):
            if conn.sm.state in (p.ConnState.READY, p.ConnState.AUTHENTICATING):
                conn.sm.to(p.ConnState.DRAINING)
        await self.engine.router.idle()
        # Read positions waiting for their conversation get one last try (what still misses
        # is then counted as dropped: nothing holds it after this process).
        if self._read_retry_timer is not None:
            self._read_retry_timer.cancel()
            self._read_retry_timer = None
        for item in self.read_retries.due(float("inf")):
            self.read_positions.submit(item)
        await self.read_positions.idle()
        for _ in range(3):
            await asyncio.sleep(0)


def _retrieved(fut: asyncio.Future) -> None:
    """Done callback of a best-effort future: its failure is seen (not logged as never retrieved)."""
    if not fut.cancelled():
        fut.exception()


def _kind(pr: authz.Principal) -> str:
    return "contact" if pr.is_shopper else "member"


def _role_label(pr: authz.Principal) -> str:
    return "shopper" if pr.is_shopper else "member"


_DISPATCH = {
    p.Send: Gateway.on_send,
    p.Typing: Gateway.on_typing,
    p.Read: Gateway.on_read,
    p.Presence: Gateway.on_presence,
    p.Resume: Gateway.on_resume,
    p.History: Gateway.on_history,
    p.UpdateConversation: Gateway.on_update,
    p.DeleteMessage: Gateway.on_delete_message,
    p.RefreshToken: Gateway.on_refresh,
    p.Ping: Gateway.on_ping,
}


async def serve(config: Config, *, ready: asyncio.Future | None = None) -> None:
    from engine import metrics as engine_metrics

    g = config.gateway
    httpd, _thread = start_metrics_server(config, g.metrics_port)
    redis = create_redis(config)
    # The fan-out's blocking XREAD: a lean RESP client (engine/resp.py); on Redis
    # Cluster the cluster client multiplexes it over the nodes.
    reader_redis = (create_redis(config, single_connection_client=True) if config.redis.cluster
                    else StreamReaderConnection(config.redis.url))
    # min_size=0: the gateway starts (and live chat runs) while PostgreSQL is down.
    pool = await create_pool(config.database.url, min_size=0, max_size=config.database.pool_max,
                             command_timeout=config.database.command_timeout)
    engine = EngineClient(config, redis=redis, pool=pool, metrics=engine_metrics)   # append batch sizes
    watch_pool("postgres", "main", pool)
    watch_pool("redis", "main", redis)
    if config.redis.cluster:
        watch_pool("redis", "stream_reader", reader_redis)
    verifier = TokenVerifier(config)
    gateway = Gateway(config, redis=redis, pool=pool, engine=engine, verifier=verifier)
    gateway.fanout.reader_redis = reader_redis
    background: list[asyncio.Task] = []
    presence_writer = None
    server = None
    try:
        await engine.start()
        loop = asyncio.get_running_loop()
        background = [loop.create_task(gateway.fanout.read_streams()), loop.create_task(gateway.read_pubsub())]
        presence_writer = loop.create_task(gateway.presence.run())
        # a deep accept queue: a reconnect or connection storm must not overflow it
        # (asyncio's default 100 drops SYNs: 1 s, 3 s retries)
        server = await websocket.serve(lambda: Conn(gateway), gateway.ws_settings, g.host, g.port,
                                       backlog=LISTEN_BACKLOG)
        log.info("gateway listening on %s:%d", g.host, g.port)
        if ready is not None and not ready.done():
            ready.set_result(server)
        await asyncio.Future()
    finally:
        if server is not None:
            # Graceful drain: stop accepting, let in-flight sends be acknowledged, then tell
            # every client to reconnect elsewhere (4000) and wait for the handlers.
            server.stop_accepting()
            try:
                await asyncio.wait_for(asyncio.shield(gateway.drain()), g.drain_seconds)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
            await server.close(ERRORS["server_shutdown"].close_code, "server_shutdown", g.drain_seconds)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await gateway.presence.close(presence_writer)   # closed sockets start their grace period
        await engine.close()
        if gateway.lookup_conn is not None:
            await gateway.lookup_conn.aclose()
        await reader_redis.aclose()
        await redis.aclose()
        if pool is not None:
            await pool.close()
        await stop_metrics_server(httpd)
