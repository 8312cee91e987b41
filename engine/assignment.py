"""Auto-assignment of new conversations, and the workflow side of an engine worker.

:class:`Assigner` reads every shard stream through its own consumer group ``assignment``
(independent of the persisting and webhook groups).  A conversation is *new* at its first
message (stream entry ``t=m``, ``s=1``) when that message is the contact's (``incoming``).
For each one, in one PostgreSQL transaction scoped to the organisation:

1. lock the organisation row (``FOR UPDATE``): decisions of one organisation are serialised
   across every worker, so round-robin turns and load counts never interleave;
2. the claim: a row in ``auto_assignments`` keyed by the conversation.  If it exists, another
   worker (or an earlier attempt of this one) decided already: its decision is re-applied if it
   was not yet, which changes nothing when it was -- a conversation is assigned once;
3. the decision (pure, ``engine/rules.py``): ordered rules, first match wins, then the default
   strategy among **online** agents (chose Online and have an inbox open,
   ``engine/availability.py``); the round-robin cursor moves in the same transaction.

After COMMIT the decision goes through :meth:`EngineClient.update_conversation` (actor
``{"kind": "system", "id": "auto_assign"}``), i.e. a ``conversation.update`` entry with the
change ``assignment`` that every inbox socket sees live and that the webhook dispatcher turns
into ``conversation.assigned``.  It assigns only if the conversation is still unassigned,
decided atomically inside ``update.lua`` (``only_if_unassigned``): a conversation someone
assigned by hand in the meantime keeps its assignee (outcome ``already_assigned``).  Only
then is the stream entry acknowledged: a worker that dies in between leaves it pending,
another takes it over (``workflow.assignment_claim_idle_ms``) and finds the decision.

Reading, lingering, claiming and acknowledging are engine/groups.py's ``GroupReader``.

:func:`run_workflow` runs the assigner, the reminder loop (``engine/reminders.py``) and the
presence sweeper (``engine/availability.py``) in an engine worker.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg
import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from convot.config import Config
from convot.db import scoped
from engine import keys
from engine.availability import Presence, run_sweeper
from engine.client import KEEP, EngineClient
from engine.errors import EngineError
from engine.groups import GroupReader
from engine.rules import (BusinessHours, Clock, Context, Decision, RuleError, RuleSet, choose, evaluate,
                          needs_strategy, parse_business_hours, parse_timezone, utc_now)

log = logging.getLogger("convot.engine.assignment")

GROUP = "assignment"
READ_COUNT = 200
READ_BLOCK_MS = 1000
ACTOR = ("system", "auto_assign")
STOP_GRACE_SECONDS = 5.0
_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
_PG_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
            asyncpg.TooManyConnectionsError, asyncpg.DeadlockDetectedError, asyncpg.SerializationError, TimeoutError)


class Retry(Exception):
    """A backing store is unavailable: the entry stays pending and is tried again."""


@dataclass(frozen=True, slots=True)
class NewConversation:
    org_id: str
    conversation_id: str
    contact_id: str
    app_id: str
    channel: str
    body: str


def _text(fields: Mapping, name: bytes) -> str:
    value = fields.get(name, b"")
    return value.decode() if isinstance(value, bytes) else str(value)


def new_conversation(fields: Mapping) -> NewConversation | None:
    """The new conversation a stream entry announces, if it does (pure)."""
    if not fields or fields.get(b"t") != b"m" or fields.get(b"s") != b"1":
        return None
    try:
        message = orjson.loads(fields[b"f"])["message"]
    except (KeyError, TypeError, orjson.JSONDecodeError):
        return None
    if not isinstance(message, dict) or message.get("type") != "incoming":
        return None
    return NewConversation(_text(fields, b"o"), _text(fields, b"c"), _text(fields, b"k"), _text(fields, b"a"),
                           _text(fields, b"h") or "widget", str(message.get("body") or ""))


_LOADS = """
SELECT q.user_id, count(*)::int AS n FROM (
    SELECT c.id AS conversation_id, c.assignee_id AS user_id FROM conversations c
    WHERE c.org_id = $1 AND c.status = 'open' AND c.assignee_id = ANY($2::uuid[])
    UNION
    SELECT a.conversation_id, a.assignee_id FROM auto_assignments a
    WHERE a.org_id = $1 AND a.assignee_id = ANY($2::uuid[])
      AND a.created_at > now() - make_interval(secs => $3)
      AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.org_id = $1 AND c.id = a.conversation_id
                      AND (c.assignee_id IS NOT NULL OR c.status <> 'open'))
) q GROUP BY q.user_id
"""


def hours_of(timezone: str, intervals) -> BusinessHours:
    """The organisation's schedule; an unreadable one (never written by the API) is "no schedule"."""
    try:
        return parse_business_hours(timezone, intervals)
    except RuleError:
        try:
            return BusinessHours(parse_timezone(timezone))
        except RuleError:
            return BusinessHours(parse_timezone("UTC"))


class Assigner:
    def __init__(self, config: Config, pool: asyncpg.Pool, redis, engine: EngineClient, presence: Presence, *,
                 clock: Clock = utc_now, consumer: str | None = None, group: str = GROUP):
        self.config = config
        self.pool = pool
        self.redis = redis
        self.engine = engine
        self.presence = presence
        self.clock = clock
        self.group = group
        self.w = config.workflow
        self.streams = [keys.stream(s) for s in range(config.engine.shards)]
        # "$": only conversations that start from now on, never the stream's history; a group
        # Redis lost (NOGROUP) is created again by the GroupReader, from then on too
        self.group_reader = GroupReader(redis, group, self.streams, start_id="$", count=READ_COUNT,
                                        claim_idle_ms=self.w.assignment_claim_idle_ms,
                                        linger=config.engine.batch_linger_ms / 1000, consumer=consumer)
        self.consumer = self.group_reader.consumer
        self._recheck_pending = True      # at start: our own entries left pending by a previous run

    async def setup(self) -> None:
        await self.group_reader.create()

    # ---- reading ----------------------------------------------------------------------------

    async def step(self, block_ms: int = READ_BLOCK_MS) -> int:
        entries: list[tuple[str, bytes, dict]] = []
        if self._recheck_pending:
            entries = await self.group_reader.own_pending()
            self._recheck_pending = bool(entries)
        if not entries:
            entries = await self.group_reader.claim_if_due()
        if not entries:
            entries = await self.group_reader.read(block_ms)
        if entries:
            await self.handle(entries)
        return len(entries)

    async def handle(self, entries: list[tuple[str, bytes, dict]]) -> None:
        """Decide for every new conversation among ``entries``; acknowledge what is done."""
        done: list[tuple[str, bytes]] = []
        try:
            for stream, eid, fields in entries:
                job = new_conversation(fields or {})
                if job is not None:
                    try:
                        await self.assign(job)
                    except Retry:
                        raise
                    except Exception as exc:
                        # A bug must not block the shard: log where it happened -- the type and the
                        # frames, never the exception's message, which may quote a message body.
                        frames = " < ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}"
                                            for f in reversed(traceback.extract_tb(exc.__traceback__)))
                        log.error("auto-assignment failed for a conversation; left unassigned",
                                  extra={"org_id": job.org_id, "conversation_id": job.conversation_id,
                                         "error": type(exc).__name__, "trace": frames})
                done.append((stream, eid))
        finally:
            if done:
                await self.group_reader.ack(done)

    # ---- deciding and applying -----------------------------------------------------------------

    async def assign(self, job: NewConversation) -> Decision | None:
        """Decide once (or find the decision), then apply it; the decision, None if none was due."""
        try:
            decision, applied = await self._decide(job)
        except _PG_DOWN as exc:
            raise Retry(type(exc).__name__) from None
        except _REDIS_DOWN as exc:
            raise Retry(type(exc).__name__) from None
        if decision is None or applied:
            return decision
        return await self._apply(job, decision)

    async def _decide(self, job: NewConversation) -> tuple[Decision | None, bool]:
        org = job.org_id
        async with scoped(self.pool, org_id=org) as conn:
            # Nothing to decide for an organisation on `manual` without an enabled rule: no lock,
            # no record (the common case, and a burst of new conversations must stay cheap).
            if await conn.fetchval(
                    "SELECT assignment_strategy = 'manual' AND NOT EXISTS (SELECT 1 FROM assignment_rules r "
                    "WHERE r.org_id = $1 AND r.enabled) FROM organisations WHERE id = $1", org) is not False:
                return None, True            # manual without rules, or the organisation is gone
            # NO KEY UPDATE: serialises this organisation's decisions without blocking the
            # persisting worker, whose inserts take FOR KEY SHARE on the same row (foreign keys).
            settings = await conn.fetchrow(
                "SELECT assignment_strategy, round_robin_cursor, timezone, business_hours FROM organisations "
                "WHERE id = $1 FOR NO KEY UPDATE", org)
            if settings is None:
                return None, True            # the organisation is gone
            prior = await conn.fetchrow(
                "SELECT assignee_id, tags, rule_id, outcome, applied_at FROM auto_assignments "
                "WHERE org_id = $1 AND conversation_id = $2", org, job.conversation_id)
            if prior is not None:
                return _from_row(prior, settings["round_robin_cursor"]), prior["applied_at"] is not None
            rows = await conn.fetch(
                "SELECT id, name, conditions, actions, enabled FROM assignment_rules "
                "WHERE org_id = $1 AND enabled ORDER BY position", org)
            contact_tags = frozenset(await conn.fetchval(
                "SELECT COALESCE(array_agg(t.name), '{}') FROM contact_tags ct JOIN tags t ON t.id = ct.tag_id "
                "WHERE ct.org_id = $1 AND ct.contact_id = $2", org, job.contact_id or None))
            ctx = Context(job.app_id, job.channel, contact_tags, job.body, self.clock(),
                          hours_of(settings["timezone"], settings["business_hours"]))
            match = evaluate(RuleSet.from_rows(rows).rules, ctx)
            strategy = settings["assignment_strategy"]
            online = await self.presence.online_agents(conn, org)
            loads = None
            if strategy == "load_balanced" and needs_strategy(match, online):
                loads = {str(r["user_id"]): r["n"] for r in await conn.fetch(_LOADS, org, online, self.w.load_window)}
            decision = choose(match, strategy, online, cursor=settings["round_robin_cursor"], loads=loads)
            if decision.cursor != settings["round_robin_cursor"]:
                await conn.execute("UPDATE organisations SET round_robin_cursor = $2 WHERE id = $1",
                                   org, decision.cursor)
            inserted = await conn.fetchval(
                """INSERT INTO auto_assignments (org_id, conversation_id, rule_id, strategy, assignee_id, tags, outcome)
                   VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (conversation_id) DO NOTHING
                   RETURNING true""",
                org, job.conversation_id, decision.rule_id, strategy, decision.assignee, list(decision.tags),
                decision.outcome)
            if not inserted:
                raise asyncpg.SerializationError("claimed concurrently")   # retried: finds the decision
        log.info("auto-assignment decided", extra={"org_id": org, "conversation_id": job.conversation_id,
                                                   "outcome": decision.outcome, "rule_id": decision.rule_id})
        return decision, False

    async def _apply(self, job: NewConversation, decision: Decision) -> Decision:
        org, conv = job.org_id, job.conversation_id
        outcome = decision.outcome
        try:
            if decision.assignee is not None or decision.tags:
                # "only if unassigned" is decided inside update.lua, atomically: an assignee set by
                # hand at any moment before this call stays (the tags are added all the same)
                result = await self.engine.update_conversation(
                    org, conv, assignee_id=decision.assignee if decision.assignee is not None else KEEP,
                    add_tags=decision.tags, actor=ACTOR, only_if_unassigned=True)
                if result.assignee_kept:
                    outcome = "already_assigned"
            elif await self.engine.conversation(org, conv) is None:
                outcome = "conversation_gone"
        except EngineError as exc:
            if exc.code == "not_found":
                outcome = "conversation_gone"
            elif exc.code == "unavailable":
                raise Retry("engine unavailable") from None
            else:
                raise
        try:
            async with scoped(self.pool, org_id=org) as conn:
                await conn.execute(
                    "UPDATE auto_assignments SET applied_at = now(), outcome = $3 "
                    "WHERE org_id = $1 AND conversation_id = $2", org, conv, outcome)
        except _PG_DOWN as exc:
            raise Retry(type(exc).__name__) from None
        return Decision(decision.assignee if outcome == decision.outcome else None, decision.tags,
                        decision.rule_id, outcome, decision.cursor)


def _from_row(row, cursor: int) -> Decision:
    assignee = str(row["assignee_id"]) if row["assignee_id"] else None
    return Decision(assignee, tuple(row["tags"] or ()), str(row["rule_id"]) if row["rule_id"] else None,
                    row["outcome"], cursor)


async def run_assigner(assigner: Assigner, stop: asyncio.Event) -> None:
    backoff = 0.2
    while not stop.is_set():
        try:
            await assigner.step()
            backoff = 0.2
            continue
        except (Retry, *_REDIS_DOWN, *_PG_DOWN) as exc:
            # the entries stay pending in the group and are read again: nothing is lost
            log.warning("auto-assignment: backing store unavailable (%s)", type(exc).__name__)
        except ResponseError as exc:
            log.error("auto-assignment: Redis refused a command (%s)", type(exc).__name__)
        except Exception as exc:  # never let the loop die: log the type, back off, go on
            log.error("auto-assignment: unexpected error (%s)", type(exc).__name__)
        assigner._recheck_pending = True
        try:
            await asyncio.wait_for(stop.wait(), backoff)
        except asyncio.TimeoutError:
            pass
        backoff = min(backoff * 2, 5.0)


async def run_workflow(config: Config, pool: asyncpg.Pool, redis, stop: asyncio.Event, *,
                       clock: Clock = utc_now) -> None:
    """The engine worker's workflow side: auto-assignment, reminders and the presence sweeper,
    until ``stop`` is set; each loop finishes the item in hand (at most STOP_GRACE_SECONDS)."""
    from engine.reminders import ReminderLoop

    engine = EngineClient(config, redis=redis, pool=pool)
    presence = Presence(config, redis, pool)
    assigner = Assigner(config, pool, redis, engine, presence, clock=clock)
    reminders = ReminderLoop(config, pool, redis, engine)
    while not stop.is_set():
        try:
            await engine.start()
            await assigner.setup()
            break
        except _REDIS_DOWN:
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(run_assigner(assigner, stop), name="auto-assignment"),
             loop.create_task(reminders.run(stop), name="reminders"),
             loop.create_task(run_sweeper(presence, stop), name="presence-sweeper")]
    try:
        await stop.wait()
    finally:
        stop.set()
        _, running = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
        for task in running:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await engine.close()
