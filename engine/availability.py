"""Agent availability: what a member chose, whether they have the inbox open, what others see.

Two facts make a member's state:

* the **choice** -- Online, Busy or Offline -- set by the member (inbox socket ``presence``
  frame, or ``PUT /v1/orgs/{org}/availability``) or forced to Offline by an admin; it lives in
  ``members.availability`` (PostgreSQL) and survives everything;
* **presence** -- at least one open inbox socket.  Gateways keep one entry per member socket
  in ``cv:{N}:pr:<org>`` (a sorted set ``"<user>|<conn>"`` -> deadline, in the organisation's
  shard slot): a heartbeat keeps it ``workflow.presence_lease`` ahead, a closed socket moves it
  to ``workflow.presence_grace`` ahead.  The engine workers' sweeper removes entries whose
  deadline passed (``presence_sweep.lua``, atomic, so one worker reports each departure).

The **state** others see is the choice while present, else ``offline``
(:func:`effective_state`).  Only online agents receive auto-assigned conversations.  Every
change of a member's state is published to the whole organisation -- teammates' inboxes and
the widgets -- as ``{"type": "presence", "subject": {"kind": "member", "id"}, "state"}``,
followed by the team's summary ``{"type": "presence", "subject": {"kind": "team"}, "state":
"online" | "away"}`` (the widget's "Online" / "Away").

Pure parts (states, frames) at the top; :class:`Presence` reads and announces;
:class:`SocketPresence` is the gateway's side (one writer task per process, so the writes of
one socket reach Redis in the order they happened).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from convot.config import Config
from convot.db import scoped
from engine import keys
from engine.scripts import Script

log = logging.getLogger("convot.engine.availability")

STATES = ("online", "busy", "offline")
TEAM_STATES = ("online", "away")
SWEEP_ORGS_PER_CALL = 200
MAX_PENDING_OPS = 100_000
_LUA = Path(__file__).parent / "lua"
_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
_PG_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
            asyncpg.TooManyConnectionsError, TimeoutError)


# ---- pure ------------------------------------------------------------------------------------

def presence_key(shard: int, org_id: str) -> str:
    return f"cv:{{{shard}}}:pr:{org_id}"


def presence_due_key(shard: int) -> str:
    return f"cv:{{{shard}}}:prdue"


def effective_state(choice: str, present: bool) -> str:
    """What teammates and the widget see: the member's choice while an inbox is open."""
    if choice not in STATES:
        raise ValueError(f"unknown availability {choice!r}")
    return choice if present else "offline"


def team_state(states: Iterable[str]) -> str:
    """The widget's summary: "online" when at least one member is online, else "away"."""
    return "online" if any(s == "online" for s in states) else "away"


def presence_frame(user_id: str, state: str) -> bytes:
    return orjson.dumps({"type": "presence", "subject": {"kind": "member", "id": str(user_id)}, "state": state})


def team_frame(state: str) -> bytes:
    return orjson.dumps({"type": "presence", "subject": {"kind": "team"}, "state": state})


def ephemeral(org_id: str, frame: bytes, audience: str) -> bytes:
    """A message of the shard's ephemeral channel, as ``EngineClient.publish_ephemeral`` writes it
    and ``gateway.server.Fanout.deliver_ephemeral`` reads it: ``org|contact|audience|sender|frame``.
    ``audience``: ``o`` every socket of the organisation, ``m`` its members only."""
    if audience not in ("o", "m"):
        raise ValueError("audience")
    return f"{org_id}||{audience}||".encode() + frame


async def publish(redis, shards: int, org_id: str, frames: Iterable[bytes], audience: str = "o") -> None:
    """Fan ``frames`` out to the organisation's sockets on every gateway (never stored)."""
    channel = keys.ephemeral_channel(keys.shard_of(str(org_id), shards))
    pipe = redis.pipeline(transaction=False)
    count = 0
    for frame in frames:
        pipe.publish(channel, ephemeral(str(org_id), frame, audience))
        count += 1
    if count:
        await pipe.execute()


@dataclass(frozen=True, slots=True)
class MemberState:
    user_id: str
    choice: str
    present: bool

    @property
    def state(self) -> str:
        return effective_state(self.choice, self.present)


# Read once at import: a Presence is cheap to make (the admin API makes one per request).
_SOURCES = {n: (_LUA / f"{n}.lua").read_text() for n in ("presence_set", "presence_sweep", "presence_read")}


class _Scripts:
    def __init__(self):
        self.by_name = {n: Script(n, source) for n, source in _SOURCES.items()}

    async def run(self, redis, name: str, keys_: list[str], args: list) -> object:
        script = self.by_name[name]
        try:
            return await redis.evalsha(script.sha, len(keys_), *keys_, *args)
        except NoScriptError:
            await redis.script_load(script.source)
            return await redis.evalsha(script.sha, len(keys_), *keys_, *args)

    def queue(self, pipe, name: str, keys_: list[str], args: list) -> None:
        pipe.evalsha(self.by_name[name].sha, len(keys_), *keys_, *args)

    async def load(self, redis) -> None:
        for script in self.by_name.values():
            await redis.script_load(script.source)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---- reading and announcing ------------------------------------------------------------------------

class Presence:
    """Presence reads, availability changes and announcements (gateway, engine, admin API)."""

    def __init__(self, config: Config, redis, pool: asyncpg.Pool | None):
        self.config = config
        self.redis = redis
        self.pool = pool
        self.shards = config.engine.shards
        self.w = config.workflow
        self.scripts = _Scripts()

    def shard_of(self, org_id) -> int:
        return keys.shard_of(str(org_id), self.shards)

    async def present(self, org_id) -> set[str]:
        """Members of the organisation with an inbox socket open (or closed within the grace period)."""
        org = str(org_id)
        users = await self.scripts.run(self.redis, "presence_read", [presence_key(self.shard_of(org), org)], [])
        return {_text(u) for u in users}

    async def states(self, conn: asyncpg.Connection, org_id) -> list[MemberState]:
        """Every member's choice and presence (``conn`` scoped to the organisation)."""
        rows = await conn.fetch("SELECT user_id, availability FROM members WHERE org_id = $1 ORDER BY user_id",
                                org_id)
        present = await self.present(org_id)
        return [MemberState(str(r["user_id"]), r["availability"], str(r["user_id"]) in present) for r in rows]

    async def online_agents(self, conn: asyncpg.Connection, org_id) -> list[str]:
        """Who may receive auto-assigned conversations: chose Online and has an inbox open."""
        return sorted(s.user_id for s in await self.states(conn, org_id) if s.state == "online")

    async def team(self, conn: asyncpg.Connection, org_id) -> str:
        return team_state(s.state for s in await self.states(conn, org_id))

    async def set_entries(self, org_id: str, entries: list[tuple[str, str, int, str]]) -> list[str]:
        """Write socket entries (user, conn, ttl ms, 'c'|'d'); the users who just arrived."""
        shard = self.shard_of(org_id)
        args: list = [org_id, self._key_ttl_ms(), len(entries)]
        for entry in entries:
            args.extend(entry)
        arrived = await self.scripts.run(self.redis, "presence_set",
                                         [presence_key(shard, org_id), presence_due_key(shard)], args)
        return [_text(u) for u in arrived]

    def _key_ttl_ms(self) -> int:
        return int((max(self.w.presence_lease, self.w.presence_grace) * 2 + 60) * 1000)

    async def announce(self, org_id, users: Iterable[str]) -> None:
        """Publish the current state of ``users`` and the team's summary to the organisation."""
        org = str(org_id)
        users = list(dict.fromkeys(str(u) for u in users))
        if self.pool is None:
            return
        try:
            async with scoped(self.pool, org_id=org) as conn:
                states = await self.states(conn, org)
        except _PG_DOWN as exc:
            # Without the choices only a departure is certain: gone is offline whatever was chosen.
            log.warning("presence: PostgreSQL unavailable (%s); announcing departures only", type(exc).__name__)
            present = await self.present(org)
            await publish(self.redis, self.shards, org,
                          [presence_frame(u, "offline") for u in users if u not in present])
            return
        by_user = {s.user_id: s for s in states}
        frames = [presence_frame(u, by_user[u].state) for u in users if u in by_user]
        frames.append(team_frame(team_state(s.state for s in states)))
        await publish(self.redis, self.shards, org, frames)

    async def choose(self, org_id, user_id, choice: str) -> bool:
        """The member's own choice (inbox socket frame): persisted, then announced.  False when
        the user is not a member.  The admin API does the same inside its audited transaction."""
        if choice not in STATES:
            raise ValueError(f"unknown availability {choice!r}")
        async with scoped(self.pool, org_id=str(org_id)) as conn:
            found = await set_choice(conn, org_id, user_id, choice)
        if found is None:
            return False
        await self.announce(org_id, [str(user_id)])
        return True

    async def sweep(self) -> list[tuple[str, str]]:
        """Remove lapsed entries on every shard and announce who left; the (org, user) pairs."""
        pipe = self.redis.pipeline(transaction=False)
        for shard in range(self.shards):
            self.scripts.queue(pipe, "presence_sweep", [presence_due_key(shard)], [SWEEP_ORGS_PER_CALL])
        try:
            replies = await pipe.execute()
        except NoScriptError:
            await self.scripts.load(self.redis)
            return []
        gone: dict[str, list[str]] = {}
        for reply in replies:
            flat = [_text(v) for v in reply or ()]
            for i in range(0, len(flat) - 1, 2):
                gone.setdefault(flat[i], []).append(flat[i + 1])
        for org, users in gone.items():
            await self.announce(org, users)
        return [(org, u) for org, users in gone.items() for u in users]


async def set_choice(conn: asyncpg.Connection, org_id, user_id, choice: str) -> str | None:
    """Store a member's choice in the caller's transaction; the previous choice, None if no member."""
    if choice not in STATES:
        raise ValueError(f"unknown availability {choice!r}")
    previous = await conn.fetchval(
        "SELECT availability FROM members WHERE org_id = $1 AND user_id = $2 FOR UPDATE", org_id, user_id)
    if previous is not None and previous != choice:
        await conn.execute("UPDATE members SET availability = $3 WHERE org_id = $1 AND user_id = $2",
                           org_id, user_id, choice)
    return previous


async def run_sweeper(presence: Presence, stop: asyncio.Event) -> None:
    """Engine worker loop: every ``workflow.sweep_interval`` seconds, end lapsed presences."""
    interval = presence.w.sweep_interval
    backoff = interval
    while not stop.is_set():
        try:
            await presence.sweep()
            backoff = interval
        except (*_REDIS_DOWN, *_PG_DOWN) as exc:
            log.warning("presence sweeper: backing store unavailable (%s)", type(exc).__name__)
            backoff = min(backoff * 2, 10.0)
        except Exception as exc:  # never let the loop die: log the type, back off, go on
            log.error("presence sweeper: unexpected error (%s)", type(exc).__name__)
            backoff = min(backoff * 2, 10.0)
        try:
            await asyncio.wait_for(stop.wait(), backoff)
        except asyncio.TimeoutError:
            pass


# ---- the gateway's side ------------------------------------------------------------------------

class SocketPresence:
    """The member sockets of one gateway process, mirrored into Redis.

    ``connected`` / ``disconnected`` are synchronous (called from the socket handler) and only
    queue the change; one writer (:meth:`run`) sends the queued changes, plus a heartbeat of
    every open socket each ``presence_lease / 3`` seconds, in one pipeline per round.  Users
    who arrive are announced in the background.
    """

    def __init__(self, presence: Presence):
        self.presence = presence
        w = presence.w
        self.lease_ms = int(w.presence_lease * 1000)
        self.grace_ms = int(w.presence_grace * 1000)
        self.heartbeat_every = w.presence_lease / 3
        self.local: dict[str, tuple[str, str]] = {}          # connection id -> (org, user)
        self.pending: list[tuple[str, str, str, str]] = []    # (org, user, conn, 'c'|'d')
        self.wake = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()
        self._last_heartbeat = 0.0
        self._closing = False

    def connected(self, conn_id: str, org_id: str, user_id: str) -> None:
        self.local[conn_id] = (org_id, user_id)
        self._queue((org_id, user_id, conn_id, "c"))

    def disconnected(self, conn_id: str) -> None:
        entry = self.local.pop(conn_id, None)
        if entry is not None:
            self._queue((entry[0], entry[1], conn_id, "d"))

    def _queue(self, op) -> None:
        if len(self.pending) >= MAX_PENDING_OPS:
            # Redis has been down a long time: the oldest changes go; leases and the next
            # heartbeat put every open socket back.
            del self.pending[: len(self.pending) // 2]
        self.pending.append(op)
        self.wake.set()

    async def flush(self) -> None:
        """Send what is queued (and a heartbeat when due) in one round trip."""
        now = time.monotonic()
        ops, self.pending = self.pending, []
        heartbeat = now - self._last_heartbeat >= self.heartbeat_every
        by_org: dict[str, list[tuple[str, str, int, str]]] = {}
        for org, user, conn, mode in ops:
            by_org.setdefault(org, []).append((user, conn, self.lease_ms if mode == "c" else self.grace_ms, mode))
        if heartbeat:
            for conn, (org, user) in self.local.items():
                by_org.setdefault(org, []).append((user, conn, self.lease_ms, "c"))
        if not by_org:
            return
        p = self.presence
        pipe = p.redis.pipeline(transaction=False)
        orgs = list(by_org)
        for org in orgs:
            shard = p.shard_of(org)
            entries = by_org[org]
            args: list = [org, p._key_ttl_ms(), len(entries)]
            for entry in entries:
                args.extend(entry)
            p.scripts.queue(pipe, "presence_set", [presence_key(shard, org), presence_due_key(shard)], args)
        try:
            replies = await pipe.execute()
        except NoScriptError:
            await p.scripts.load(p.redis)
            self.pending[:0] = ops
            return
        except BaseException:
            self.pending[:0] = ops       # not sent: keep them, in order, for the next round
            raise
        if heartbeat:
            self._last_heartbeat = now
        for org, arrived in zip(orgs, replies):
            if arrived:
                self._spawn(p.announce(org, [_text(u) for u in arrived]))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(self._quietly(coro))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @staticmethod
    async def _quietly(coro) -> None:
        try:
            await coro
        except (*_REDIS_DOWN, *_PG_DOWN) as exc:
            log.warning("presence announcement skipped: backing store unavailable (%s)", type(exc).__name__)

    async def run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self.flush()
                backoff = 0.2
            except _REDIS_DOWN as exc:
                log.warning("presence writer: Redis unavailable (%s)", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except Exception as exc:  # the changes stay queued; never let the writer die
                log.error("presence writer: unexpected error (%s)", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if self._closing and not self.pending:
                return
            self.wake.clear()
            if self.pending:
                continue
            try:
                await asyncio.wait_for(self.wake.wait(), self.heartbeat_every)
            except asyncio.TimeoutError:
                pass

    async def close(self, writer: asyncio.Task | None, timeout: float = 2.0) -> None:
        """Send the last changes (sockets closed by the drain), then stop the writer and announcers."""
        self._closing = True
        self.wake.set()
        if writer is not None:
            try:
                await asyncio.wait_for(asyncio.shield(writer), timeout)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        if self.tasks:
            _, running = await asyncio.wait(list(self.tasks), timeout=timeout)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
