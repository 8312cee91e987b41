"""Auto-assignment decisions: business hours, ordered rules, default strategies.  Pure: no I/O.

Everything here is a function of its arguments (the clock is an argument too), so tests drive
it with plain values; ``engine/assignment.py`` does the reading and writing around it.

* :class:`BusinessHours` -- weekly intervals in the organisation's time zone (zoneinfo, so
  daylight-saving changes are the zone's, not ours); ``is_open(at)`` and ``next_open(at)``.
* :func:`parse_rule` -- validates a rule's ``conditions`` and ``actions`` (JSON as stored in
  ``assignment_rules``), raising :class:`RuleError` that names the field.
* :func:`evaluate` -- first enabled rule whose every condition holds wins -> :class:`RuleMatch`.
* :func:`choose` -- the match + the organisation's default strategy + who is online ->
  :class:`Decision` (assignee, tags, why).

Rule format (docs/workflow.md)::

    {"conditions": [{"type": "keyword", "values": ["refund"]},
                    {"type": "business_hours", "value": "outside"}],
     "actions": [{"type": "assign", "user_id": "<uuid>"}, {"type": "add_tag", "tag": "refunds"}]}
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.events import CHANNELS, normalise_tag

STRATEGIES = ("manual", "round_robin", "load_balanced")
CONDITION_TYPES = ("app", "channel", "contact_tag", "keyword", "business_hours")
ACTION_TYPES = ("assign", "add_tag", "skip_assignment")
MAX_CONDITIONS = 10
MAX_ACTIONS = 10
MAX_VALUES = 50
MAX_KEYWORD_CHARS = 100
MAX_INTERVALS = 50
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class RuleError(ValueError):
    """A rule, a schedule or a strategy is invalid; ``field`` names where (``conditions[1].values``)."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# ---- business hours ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Interval:
    day: int          # 0 = Monday ... 6 = Sunday (ISO weekday - 1), in the organisation's zone
    start: int        # minutes after local midnight
    end: int          # exclusive; 1440 = midnight at the end of the day

    def dump(self) -> dict:
        return {"day": self.day, "start": _hhmm(self.start), "end": _hhmm(self.end)}


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _minutes(value, field: str) -> int:
    if not isinstance(value, str) or not _TIME.match(value):
        raise RuleError(field, "must be a time HH:MM from 00:00 to 24:00")
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def parse_timezone(name, field: str = "timezone") -> ZoneInfo:
    if not isinstance(name, str) or not 1 <= len(name) <= 64 or name.startswith(("/", ".")) or ".." in name:
        raise RuleError(field, "must be an IANA time zone name such as Europe/Paris")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise RuleError(field, "must be an IANA time zone name such as Europe/Paris") from None


@dataclass(frozen=True)
class BusinessHours:
    """Weekly opening intervals in ``zone``.  No intervals at all means "no schedule": always open."""

    zone: ZoneInfo
    intervals: tuple[Interval, ...] = ()

    @property
    def timezone(self) -> str:
        return self.zone.key

    @property
    def scheduled(self) -> bool:
        return bool(self.intervals)

    def dump(self) -> list[dict]:
        return [i.dump() for i in self.intervals]

    def is_open(self, at: dt.datetime) -> bool:
        if not self.intervals:
            return True
        local = _aware(at).astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        return any(i.day == day and i.start <= minute < i.end for i in self.intervals)

    def next_open(self, at: dt.datetime) -> dt.datetime | None:
        """When the next interval starts after ``at`` (UTC); None when open now or never."""
        if not self.intervals or self.is_open(at):
            return None
        at = _aware(at)
        local = at.astimezone(self.zone)
        for offset in range(8):
            date = local.date() + dt.timedelta(days=offset)
            for start in sorted(i.start for i in self.intervals if i.day == date.weekday()):
                candidate = dt.datetime(date.year, date.month, date.day, start // 60, start % 60, tzinfo=self.zone)
                candidate = candidate.astimezone(dt.timezone.utc)
                if candidate > at:
                    return candidate
        return None


def _aware(at: dt.datetime) -> dt.datetime:
    if at.tzinfo is None:
        raise ValueError("a time zone-aware datetime is required")
    return at


def parse_business_hours(timezone, intervals, field: str = "business_hours") -> BusinessHours:
    """From ``organisations.timezone`` + ``organisations.business_hours`` (or an API body)."""
    zone = parse_timezone(timezone)
    if not isinstance(intervals, list):
        raise RuleError(field, "must be a list of {day, start, end}")
    if len(intervals) > MAX_INTERVALS:
        raise RuleError(field, f"must have at most {MAX_INTERVALS} intervals")
    parsed = []
    for n, raw in enumerate(intervals):
        where = f"{field}[{n}]"
        if not isinstance(raw, dict) or set(raw) != {"day", "start", "end"}:
            raise RuleError(where, "must be an object with exactly day, start and end")
        day = raw["day"]
        if isinstance(day, bool) or not isinstance(day, int) or not 0 <= day <= 6:
            raise RuleError(where + ".day", "must be 0 (Monday) to 6 (Sunday)")
        start, end = _minutes(raw["start"], where + ".start"), _minutes(raw["end"], where + ".end")
        if start >= end:
            raise RuleError(where + ".end", "must be after start (split overnight hours into two days)")
        parsed.append(Interval(day, start, end))
    parsed.sort(key=lambda i: (i.day, i.start, i.end))
    return BusinessHours(zone, tuple(parsed))


def reply_expectation(hours: BusinessHours, at: dt.datetime, team_online: bool) -> dict:
    """What the widget tells a shopper: inside hours with someone online "minutes", else "hours"."""
    is_open = hours.is_open(at)
    next_open = hours.next_open(at)
    return {"open": is_open, "timezone": hours.timezone, "scheduled": hours.scheduled,
            "next_open_at": next_open.isoformat() if next_open else None,
            "reply_time": "minutes" if is_open and team_online else "hours"}


# ---- rules ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    values: tuple[str, ...] = ()     # app ids, channels, tags, lower-cased keywords
    inside: bool = True              # business_hours: inside (True) or outside (False)

    def dump(self) -> dict:
        if self.type == "business_hours":
            return {"type": self.type, "value": "inside" if self.inside else "outside"}
        return {"type": self.type, "values": list(self.values)}


@dataclass(frozen=True, slots=True)
class Action:
    type: str
    user_id: str | None = None
    tag: str | None = None

    def dump(self) -> dict:
        if self.type == "assign":
            return {"type": self.type, "user_id": self.user_id}
        if self.type == "add_tag":
            return {"type": self.type, "tag": self.tag}
        return {"type": self.type}


@dataclass(frozen=True)
class Rule:
    id: str
    conditions: tuple[Condition, ...]
    actions: tuple[Action, ...]
    enabled: bool = True
    name: str = ""

    @property
    def assign_to(self) -> str | None:
        return next((a.user_id for a in self.actions if a.type == "assign"), None)

    @property
    def skips_assignment(self) -> bool:
        return any(a.type == "skip_assignment" for a in self.actions)

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(a.tag for a in self.actions if a.type == "add_tag")


def _uuid_text(value, field: str) -> str:
    try:
        if isinstance(value, str) and len(value) == 36:
            return str(uuid.UUID(value))
    except ValueError:
        pass
    raise RuleError(field, "must be a UUID")


def _values(raw: dict, field: str) -> list:
    values = raw.get("values")
    if not isinstance(values, list) or not values:
        raise RuleError(field + ".values", "must be a non-empty list")
    if len(values) > MAX_VALUES:
        raise RuleError(field + ".values", f"must have at most {MAX_VALUES} items")
    return values


def parse_condition(raw, field: str) -> Condition:
    if not isinstance(raw, dict):
        raise RuleError(field, "must be an object")
    kind = raw.get("type")
    if kind not in CONDITION_TYPES:
        raise RuleError(field + ".type", "must be one of " + ", ".join(CONDITION_TYPES))
    allowed = {"type", "value"} if kind == "business_hours" else {"type", "values"}
    extra = set(raw) - allowed
    if extra:
        raise RuleError(f"{field}.{sorted(extra)[0]}", "is not a known field")
    if kind == "business_hours":
        if raw.get("value") not in ("inside", "outside"):
            raise RuleError(field + ".value", "must be inside or outside")
        return Condition(kind, inside=raw["value"] == "inside")
    values = _values(raw, field)
    out: list[str] = []
    for n, value in enumerate(values):
        where = f"{field}.values[{n}]"
        if kind == "app":
            out.append(_uuid_text(value, where))
        elif kind == "channel":
            if value not in CHANNELS:
                raise RuleError(where, "must be one of " + ", ".join(CHANNELS))
            out.append(value)
        elif kind == "contact_tag":
            tag = normalise_tag(value) if isinstance(value, str) else None
            if tag is None:
                raise RuleError(where, "must be a tag name")
            out.append(tag)
        else:  # keyword
            if not isinstance(value, str) or not value.strip() or len(value) > MAX_KEYWORD_CHARS:
                raise RuleError(where, f"must be 1 to {MAX_KEYWORD_CHARS} characters")
            out.append(value.strip().casefold())
    return Condition(kind, tuple(dict.fromkeys(out)))


def parse_action(raw, field: str) -> Action:
    if not isinstance(raw, dict):
        raise RuleError(field, "must be an object")
    kind = raw.get("type")
    if kind not in ACTION_TYPES:
        raise RuleError(field + ".type", "must be one of " + ", ".join(ACTION_TYPES))
    allowed = {"type", "user_id"} if kind == "assign" else {"type", "tag"} if kind == "add_tag" else {"type"}
    extra = set(raw) - allowed
    if extra:
        raise RuleError(f"{field}.{sorted(extra)[0]}", "is not a known field")
    if kind == "assign":
        return Action(kind, user_id=_uuid_text(raw.get("user_id"), field + ".user_id"))
    if kind == "add_tag":
        tag = normalise_tag(raw.get("tag")) if isinstance(raw.get("tag"), str) else None
        if tag is None:
            raise RuleError(field + ".tag", "must be a tag name")
        return Action(kind, tag=tag)
    return Action(kind)


def parse_rule(conditions, actions, *, rule_id: str = "", enabled: bool = True, name: str = "") -> Rule:
    if not isinstance(conditions, list):
        raise RuleError("conditions", "must be a list")
    if len(conditions) > MAX_CONDITIONS:
        raise RuleError("conditions", f"must have at most {MAX_CONDITIONS} items")
    if not isinstance(actions, list) or not actions:
        raise RuleError("actions", "must be a non-empty list")
    if len(actions) > MAX_ACTIONS:
        raise RuleError("actions", f"must have at most {MAX_ACTIONS} items")
    conds = tuple(parse_condition(c, f"conditions[{n}]") for n, c in enumerate(conditions))
    acts = tuple(parse_action(a, f"actions[{n}]") for n, a in enumerate(actions))
    kinds = [a.type for a in acts]
    if kinds.count("assign") > 1:
        raise RuleError("actions", "may assign to one agent only")
    if "assign" in kinds and "skip_assignment" in kinds:
        raise RuleError("actions", "cannot both assign and skip assignment")
    if kinds.count("skip_assignment") > 1:
        raise RuleError("actions", "may skip assignment once")
    return Rule(rule_id, conds, acts, enabled, name)


def dump_conditions(rule: Rule) -> list[dict]:
    return [c.dump() for c in rule.conditions]


def dump_actions(rule: Rule) -> list[dict]:
    return [a.dump() for a in rule.actions]


# ---- evaluation --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Context:
    """What the rules may look at for one new conversation."""

    app_id: str
    channel: str
    contact_tags: frozenset[str]
    first_message: str
    at: dt.datetime
    hours: BusinessHours

    @property
    def text(self) -> str:
        return self.first_message.casefold()


def condition_holds(c: Condition, ctx: Context) -> bool:
    if c.type == "app":
        return ctx.app_id in c.values
    if c.type == "channel":
        return ctx.channel in c.values
    if c.type == "contact_tag":
        return any(t in ctx.contact_tags for t in c.values)
    if c.type == "keyword":
        text = ctx.text
        return any(k in text for k in c.values)
    return ctx.hours.is_open(ctx.at) == c.inside


@dataclass(frozen=True)
class RuleMatch:
    rule: Rule | None = None

    @property
    def rule_id(self) -> str | None:
        return self.rule.id if self.rule is not None else None


def evaluate(rules: Iterable[Rule], ctx: Context) -> RuleMatch:
    """The first enabled rule (in the given order) whose every condition holds."""
    for rule in rules:
        if rule.enabled and all(condition_holds(c, ctx) for c in rule.conditions):
            return RuleMatch(rule)
    return RuleMatch(None)


# ---- default strategies and the final decision ----------------------------------------------------

def pick_round_robin(candidates: Iterable[str], cursor: int) -> tuple[str | None, int]:
    """The next online agent in a stable order; the cursor only moves when someone is picked."""
    ordered = sorted(set(candidates))
    if not ordered:
        return None, cursor
    return ordered[cursor % len(ordered)], cursor + 1


def pick_least_loaded(candidates: Iterable[str], loads: Mapping[str, int]) -> str | None:
    """The online agent with the fewest open conversations; ties go to the lowest id (stable)."""
    ordered = sorted(set(candidates))
    if not ordered:
        return None
    return min(ordered, key=lambda user: loads.get(user, 0))


@dataclass(frozen=True)
class Decision:
    assignee: str | None
    tags: tuple[str, ...]
    rule_id: str | None
    outcome: str          # see OUTCOMES
    cursor: int           # the round-robin cursor after this decision


OUTCOMES = {
    "rule_assigned": "a rule assigned it to its agent, who is online",
    "rule_fallback": "a rule named an agent who is not online; the default strategy chose",
    "rule_skipped": "a rule said to skip auto-assignment",
    "round_robin": "the default strategy (round-robin) chose",
    "load_balanced": "the default strategy (fewest open conversations) chose",
    "manual": "the organisation assigns manually; nobody was chosen",
    "nobody_online": "no agent was online; left unassigned",
}


def needs_strategy(match: RuleMatch, online: Iterable[str]) -> bool:
    rule = match.rule
    if rule is None:
        return True
    if rule.skips_assignment:
        return False
    target = rule.assign_to
    return target is None or target not in set(online)


def choose(match: RuleMatch, strategy: str, online: Sequence[str], *, cursor: int = 0,
           loads: Mapping[str, int] | None = None) -> Decision:
    """Who gets the conversation.  ``online``: agents whose availability is online and who have
    an inbox open.  ``loads``: open conversations per agent (load_balanced only)."""
    if strategy not in STRATEGIES:
        raise RuleError("strategy", "must be one of " + ", ".join(STRATEGIES))
    rule = match.rule
    tags = rule.tags if rule is not None else ()
    rule_id = match.rule_id
    online_set = set(online)
    if rule is not None and rule.skips_assignment:
        return Decision(None, tags, rule_id, "rule_skipped", cursor)
    if rule is not None and rule.assign_to is not None and rule.assign_to in online_set:
        return Decision(rule.assign_to, tags, rule_id, "rule_assigned", cursor)
    fallback = rule is not None and rule.assign_to is not None
    if strategy == "manual":
        return Decision(None, tags, rule_id, "rule_fallback" if fallback else "manual", cursor)
    if strategy == "round_robin":
        picked, cursor = pick_round_robin(online_set, cursor)
    else:
        picked = pick_least_loaded(online_set, loads or {})
    if picked is None:
        return Decision(None, tags, rule_id, "nobody_online", cursor)
    return Decision(picked, tags, rule_id, "rule_fallback" if fallback else strategy, cursor)


@dataclass
class RuleSet:
    """An organisation's enabled rules in order (what the assigner loads per conversation)."""

    rules: list[Rule] = field(default_factory=list)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping]) -> "RuleSet":
        """Rows of assignment_rules ordered by position; a row that no longer parses is skipped."""
        out = []
        for row in rows:
            try:
                out.append(parse_rule(row["conditions"], row["actions"], rule_id=str(row["id"]),
                                      enabled=row["enabled"], name=row.get("name") or ""))
            except RuleError:
                continue
        return cls(out)
