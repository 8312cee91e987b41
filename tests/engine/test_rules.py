"""engine/rules.py: business hours, rule validation, first-match evaluation, strategies (pure)."""

import datetime as dt
import uuid
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.rules import (Context, RuleError, RuleSet, choose, evaluate, needs_strategy,
                          parse_business_hours, parse_rule, parse_timezone, pick_least_loaded, pick_round_robin,
                          reply_expectation)

UTC = dt.timezone.utc
DANA, ERIN, FRED = sorted(str(uuid.uuid4()) for _ in range(3))
APP = str(uuid.uuid4())


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


NEW_YORK_WEEKDAYS = parse_business_hours("America/New_York", [
    {"day": d, "start": "09:00", "end": "17:00"} for d in range(5)])


def ctx(text="", *, at=None, app=APP, channel="widget", tags=(), hours=NEW_YORK_WEEKDAYS) -> Context:
    return Context(app, channel, frozenset(tags), text, at or utc(2026, 1, 14, 15, 0), hours)


# ---- business hours ----------------------------------------------------------------------------

def test_opening_flips_exactly_at_the_boundary_in_the_organisations_zone():
    # Wednesday 14 January 2026: New York is UTC-5, so 09:00 local = 14:00 UTC.
    hours = NEW_YORK_WEEKDAYS
    assert not hours.is_open(utc(2026, 1, 14, 13, 59, 59))
    assert hours.is_open(utc(2026, 1, 14, 14, 0, 0))
    assert hours.is_open(utc(2026, 1, 14, 21, 59, 59))
    assert not hours.is_open(utc(2026, 1, 14, 22, 0, 0))   # 17:00 local: closed (end is exclusive)


def test_daylight_saving_time_moves_the_boundary_in_utc():
    # Wednesday 15 July 2026: New York is UTC-4, so 09:00 local = 13:00 UTC.
    hours = NEW_YORK_WEEKDAYS
    assert not hours.is_open(utc(2026, 7, 15, 12, 59))
    assert hours.is_open(utc(2026, 7, 15, 13, 0))
    # Monday 9 March 2026, the day after the change: 09:00 EDT = 13:00 UTC.
    assert hours.is_open(utc(2026, 3, 9, 13, 0)) and not hours.is_open(utc(2026, 3, 9, 12, 59))


def test_weekday_is_the_local_one():
    # Weekdays are taken in the organisation's zone, not in UTC.
    tokyo = parse_business_hours("Asia/Tokyo", [{"day": 0, "start": "00:00", "end": "24:00"}])  # Mondays
    assert tokyo.is_open(utc(2026, 1, 18, 15, 30))      # Sunday 15:30 UTC = Monday 00:30 in Tokyo
    assert not tokyo.is_open(utc(2026, 1, 19, 15, 0))   # Monday 15:00 UTC = Tuesday 00:00 in Tokyo
    assert not NEW_YORK_WEEKDAYS.is_open(utc(2026, 1, 17, 15, 0))


def test_next_opening_and_reply_expectation():
    friday_evening = utc(2026, 1, 16, 23, 0)              # 18:00 Friday in New York
    assert NEW_YORK_WEEKDAYS.next_open(friday_evening) == utc(2026, 1, 19, 14, 0)   # Monday 09:00 EST
    assert NEW_YORK_WEEKDAYS.next_open(utc(2026, 1, 14, 15, 0)) is None             # open now
    closed = reply_expectation(NEW_YORK_WEEKDAYS, friday_evening, team_online=True)
    assert closed == {"open": False, "timezone": "America/New_York", "scheduled": True,
                      "next_open_at": "2026-01-19T14:00:00+00:00", "reply_time": "hours"}
    open_now = reply_expectation(NEW_YORK_WEEKDAYS, utc(2026, 1, 14, 15, 0), team_online=True)
    assert open_now["open"] and open_now["reply_time"] == "minutes"
    assert reply_expectation(NEW_YORK_WEEKDAYS, utc(2026, 1, 14, 15, 0), team_online=False)["reply_time"] == "hours"


def test_no_schedule_means_always_open():
    hours = parse_business_hours("Europe/Paris", [])
    assert not hours.scheduled and hours.is_open(utc(2026, 1, 18, 3, 0)) and hours.next_open(utc(2026, 1, 18)) is None


@pytest.mark.parametrize("tz, intervals, field", [
    ("Mars/Olympus", [], "timezone"),
    ("../etc/passwd", [], "timezone"),
    ("UTC", {"day": 0}, "business_hours"),
    ("UTC", [{"day": 7, "start": "09:00", "end": "17:00"}], "business_hours[0].day"),
    ("UTC", [{"day": True, "start": "09:00", "end": "17:00"}], "business_hours[0].day"),
    ("UTC", [{"day": 1, "start": "9:00", "end": "17:00"}], "business_hours[0].start"),
    ("UTC", [{"day": 1, "start": "09:00", "end": "24:30"}], "business_hours[0].end"),
    ("UTC", [{"day": 1, "start": "17:00", "end": "09:00"}], "business_hours[0].end"),
    ("UTC", [{"day": 1, "start": "09:00", "end": "17:00", "note": "x"}], "business_hours[0]"),
])
def test_bad_schedules_name_the_field(tz, intervals, field):
    with pytest.raises(RuleError) as err:
        parse_business_hours(tz, intervals)
    assert err.value.field == field


def test_schedule_round_trips():
    raw = [{"day": 4, "start": "13:00", "end": "24:00"}, {"day": 0, "start": "08:30", "end": "12:00"}]
    hours = parse_business_hours("Europe/Paris", raw)
    assert hours.dump() == [raw[1], raw[0]]
    assert parse_timezone("Europe/Paris").key == "Europe/Paris"


# ---- rules ---------------------------------------------------------------------------------------

def rule(conditions, actions, rule_id=None, enabled=True):
    return parse_rule(conditions, actions, rule_id=rule_id or str(uuid.uuid4()), enabled=enabled)


REFUND_TO_DANA = rule([{"type": "keyword", "values": ["Refund"]}], [{"type": "assign", "user_id": DANA}])


def test_keyword_is_case_insensitive_and_found_anywhere():
    assert evaluate([REFUND_TO_DANA], ctx("I want a REFUND please")).rule is REFUND_TO_DANA
    assert evaluate([REFUND_TO_DANA], ctx("Refunds?")).rule is REFUND_TO_DANA
    assert evaluate([REFUND_TO_DANA], ctx("Where is my parcel")).rule is None


def test_first_matching_enabled_rule_wins():
    vip = rule([{"type": "contact_tag", "values": ["VIP Customer"]}], [{"type": "add_tag", "tag": "vip"}])
    disabled = rule([], [{"type": "skip_assignment"}], enabled=False)
    catch_all = rule([], [{"type": "add_tag", "tag": "triage"}])
    rules = [disabled, vip, REFUND_TO_DANA, catch_all]
    assert evaluate(rules, ctx("refund", tags={"vip-customer"})).rule is vip
    assert evaluate(rules, ctx("refund")).rule is REFUND_TO_DANA
    assert evaluate(rules, ctx("hello")).rule is catch_all


def test_every_condition_of_a_rule_must_hold():
    other_app = str(uuid.uuid4())
    r = rule([{"type": "app", "values": [APP]}, {"type": "channel", "values": ["email", "widget"]},
              {"type": "keyword", "values": ["invoice", "billing"]}], [{"type": "add_tag", "tag": "billing"}])
    assert evaluate([r], ctx("Billing question")).rule is r
    assert evaluate([r], ctx("Billing question", app=other_app)).rule is None
    assert evaluate([r], ctx("Billing question", channel="api")).rule is None
    assert evaluate([r], ctx("hello")).rule is None


def test_business_hours_rule_flips_at_the_boundary_with_a_controlled_clock():
    night = rule([{"type": "business_hours", "value": "outside"}], [{"type": "assign", "user_id": ERIN}])
    day = rule([{"type": "business_hours", "value": "inside"}], [{"type": "assign", "user_id": FRED}])
    before, at_opening = utc(2026, 1, 14, 13, 59, 59), utc(2026, 1, 14, 14, 0)
    assert evaluate([night, day], ctx(at=before)).rule is night
    assert evaluate([night, day], ctx(at=at_opening)).rule is day
    assert evaluate([night, day], ctx(at=utc(2026, 1, 14, 22, 0))).rule is night


@pytest.mark.parametrize("conditions, actions, field", [
    ("x", [{"type": "skip_assignment"}], "conditions"),
    ([], [], "actions"),
    ([{"type": "weather", "values": ["sun"]}], [{"type": "skip_assignment"}], "conditions[0].type"),
    ([{"type": "keyword", "values": []}], [{"type": "skip_assignment"}], "conditions[0].values"),
    ([{"type": "keyword", "values": ["  "]}], [{"type": "skip_assignment"}], "conditions[0].values[0]"),
    ([{"type": "app", "values": ["not-a-uuid"]}], [{"type": "skip_assignment"}], "conditions[0].values[0]"),
    ([{"type": "channel", "values": ["fax"]}], [{"type": "skip_assignment"}], "conditions[0].values[0]"),
    ([{"type": "contact_tag", "values": ["!!!"]}], [{"type": "skip_assignment"}], "conditions[0].values[0]"),
    ([{"type": "business_hours", "value": "sometimes"}], [{"type": "skip_assignment"}], "conditions[0].value"),
    ([{"type": "keyword", "values": ["a"], "extra": 1}], [{"type": "skip_assignment"}], "conditions[0].extra"),
    ([], [{"type": "assign"}], "actions[0].user_id"),
    ([], [{"type": "add_tag", "tag": ""}], "actions[0].tag"),
    ([], [{"type": "assign", "user_id": DANA}, {"type": "skip_assignment"}], "actions"),
    ([], [{"type": "assign", "user_id": DANA}, {"type": "assign", "user_id": ERIN}], "actions"),
])
def test_invalid_rules_name_the_field(conditions, actions, field):
    with pytest.raises(RuleError) as err:
        parse_rule(conditions, actions)
    assert err.value.field == field


def test_rule_values_are_normalised():
    r = parse_rule([{"type": "contact_tag", "values": ["VIP Customer", "vip-customer"]},
                    {"type": "keyword", "values": ["  Refund "]}],
                   [{"type": "add_tag", "tag": "Needs Review"}])
    assert r.conditions[0].values == ("vip-customer",) and r.conditions[1].values == ("refund",)
    assert r.tags == ("needs-review",)


def test_rule_set_from_rows_skips_rows_that_no_longer_parse():
    rows = [{"id": uuid.uuid4(), "name": "ok", "conditions": [], "actions": [{"type": "skip_assignment"}],
             "enabled": True},
            {"id": uuid.uuid4(), "name": "broken", "conditions": [{"type": "gone"}], "actions": [], "enabled": True}]
    assert [r.name for r in RuleSet.from_rows(rows).rules] == ["ok"]


# ---- strategies and the decision ----------------------------------------------------------------------

def test_round_robin_nine_conversations_three_agents_three_each():
    cursor, picks = 0, []
    for _ in range(9):
        picked, cursor = pick_round_robin([FRED, DANA, ERIN], cursor)
        picks.append(picked)
    assert Counter(picks) == {DANA: 3, ERIN: 3, FRED: 3}
    assert picks[:3] == [DANA, ERIN, FRED]
    assert pick_round_robin([], 5) == (None, 5)


@given(st.integers(min_value=1, max_value=8), st.integers(min_value=1, max_value=6),
       st.integers(min_value=0, max_value=10 ** 6))
def test_round_robin_is_even_from_any_cursor(agents, rounds, cursor):
    ids = [f"{i:02d}" for i in range(agents)]
    counts = Counter()
    for _ in range(agents * rounds):
        picked, cursor = pick_round_robin(ids, cursor)
        counts[picked] += 1
    assert set(counts.values()) == {rounds}


def test_least_loaded_picks_fewest_open_then_lowest_id():
    assert pick_least_loaded([DANA, ERIN, FRED], {DANA: 3, ERIN: 1, FRED: 2}) == ERIN
    assert pick_least_loaded([DANA, ERIN, FRED], {DANA: 1, ERIN: 1, FRED: 1}) == DANA
    assert pick_least_loaded([ERIN, FRED], {}) == ERIN
    assert pick_least_loaded([], {DANA: 0}) is None


def test_rule_assigns_to_online_agent_else_falls_back_to_the_default_strategy():
    match = evaluate([REFUND_TO_DANA], ctx("refund"))
    online = choose(match, "round_robin", [DANA, ERIN], cursor=7)
    assert (online.assignee, online.outcome, online.cursor) == (DANA, "rule_assigned", 7)
    assert not needs_strategy(match, [DANA, ERIN]) and needs_strategy(match, [ERIN, FRED])
    offline = choose(match, "round_robin", [ERIN, FRED], cursor=0)
    assert (offline.assignee, offline.outcome, offline.cursor) == (ERIN, "rule_fallback", 1)
    balanced = choose(match, "load_balanced", [ERIN, FRED], loads={ERIN: 4, FRED: 2})
    assert (balanced.assignee, balanced.outcome) == (FRED, "rule_fallback")
    manual = choose(match, "manual", [ERIN])
    assert (manual.assignee, manual.outcome) == (None, "rule_fallback")


def test_skip_and_tags_and_manual_and_nobody_online():
    skip = rule([{"type": "channel", "values": ["api"]}],
                [{"type": "skip_assignment"}, {"type": "add_tag", "tag": "api"}])
    d = choose(evaluate([skip], ctx(channel="api")), "round_robin", [DANA], cursor=3)
    assert (d.assignee, d.tags, d.outcome, d.cursor, d.rule_id) == (None, ("api",), "rule_skipped", 3, skip.id)
    none = evaluate([skip], ctx(channel="widget"))
    assert choose(none, "manual", [DANA]).outcome == "manual"
    nobody = choose(none, "round_robin", [], cursor=2)
    assert (nobody.assignee, nobody.outcome, nobody.cursor) == (None, "nobody_online", 2)
    assert choose(none, "load_balanced", []).outcome == "nobody_online"
    with pytest.raises(RuleError):
        choose(none, "random", [DANA])
