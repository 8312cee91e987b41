"""Plans: limits are seats and apps only; prices come from configuration."""

import pytest

from admin_api.billing.plans import FREE, load_plans, parse_price_ids
from convot.config import ConfigError


def test_repository_plans_load_with_prices(tmp_path):
    plans = load_plans("configs/plans.toml", "team=price_1Team,business=price_1Biz")
    assert {p.name for p in plans} == {"free", "team", "business"}
    free, team = plans.get("free"), plans.get("team")
    assert (free.seats, free.apps, free.purchasable) == (5, 1, False)
    assert (team.seats, team.apps, team.price_id) == (10, 3, "price_1Team")
    assert plans.by_price("price_1Biz").name == "business" and plans.by_price("price_other") is None


def test_effective_plan_follows_the_subscription_status():
    plans = load_plans("configs/plans.toml", "team=price_1Team")
    assert plans.effective("team", "active").name == "team"
    assert plans.effective("team", "past_due").name == "team"      # keeps its limits, sees a banner
    assert plans.effective("team", "trialing").name == "team"
    assert plans.effective("team", "canceled").name == FREE
    assert plans.effective("team", "incomplete").name == FREE
    assert plans.effective("gold", "active").name == FREE


def write(tmp_path, text):
    path = tmp_path / "plans.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,needle", [
    ("[plans.free]\nseats = 2\napps = 1\nconversations = 1000\n", "never limit conversations or messages"),
    ("[plans.free]\nseats = 2\napps = 1\nmessages = 10\n", "never limit conversations or messages"),
    ("[plans.free]\nseats = 0\napps = 1\n", "plans.free.seats"),
    ("[plans.free]\nseats = 2\napps = true\n", "plans.free.apps"),
    ("[plans.free]\nseats = 2\napps = 1\ncolour = 'red'\n", "unknown key"),
    ("[plans.team]\nseats = 2\napps = 1\n", "'free' plan is required"),
    ("[plans]\n", "expected [plans.<name>]"),
])
def test_bad_plan_files_are_refused_naming_the_key(tmp_path, text, needle):
    with pytest.raises(ConfigError) as info:
        load_plans(write(tmp_path, text))
    assert needle in str(info.value)


def test_price_ids():
    assert parse_price_ids(" team=price_A , business=price_B ") == {"team": "price_A", "business": "price_B"}
    for bad in ("team", "team=prod_A", "team=price_A,team=price_B"):
        with pytest.raises(ConfigError):
            parse_price_ids(bad)
    with pytest.raises(ConfigError, match="no such plan"):
        load_plans("configs/plans.toml", "gold=price_G")
    with pytest.raises(ConfigError, match="free plan has no Stripe price"):
        load_plans("configs/plans.toml", "free=price_F")
