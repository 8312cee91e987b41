"""PartnerClient against the fake Partner API (a real HTTP server) and its pure answer mapping."""

import asyncio
import random
from datetime import datetime, timezone

import aiohttp
import pytest

from engine.shopify.client import PartnerClient, interpret, throttle_delay
from engine.shopify.errors import BadResponse, NotFound, QueryError, Throttled, Unauthorized, Unavailable
from tests.fakes.shopify_partner import FakePartnerApi

T = datetime(2025, 5, 1, tzinfo=timezone.utc)


class Sleeps:
    """Records the waits the client asks for instead of waiting."""

    def __init__(self):
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
async def fake():
    api = FakePartnerApi()
    app = api.add_app("Reviews Pro")
    for n in range(5):
        api.add_transaction("AppSubscriptionSale", app, f"shop-{n}.myshopify.com", T.replace(day=n + 1), "29.00",
                            charge_id=f"gid://shopify/AppSubscription/{n}", interval="EVERY_30_DAYS")
    api.add_event(app, "RELATIONSHIP_INSTALLED", "shop-0.myshopify.com", T)
    async with api:
        yield api


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def client(fake, session, sleeps=None, **kw):
    params = dict(base_url=fake.base_url, version="2025-07", partner_org_id=fake.partner_org_id, token=fake.token,
                  requests_per_second=1000.0, sleep=sleeps or Sleeps(), rng=random.Random(7))
    params.update(kw)
    return PartnerClient(session, **params)


async def test_paginates_transactions(fake, session):
    c = client(fake, session)
    first = await c.transactions(first=2, after=None, created_at_min=None)
    assert len(first.edges) == 2 and first.has_next
    rest = await c.transactions(first=10, after=first.last_cursor, created_at_min=None)
    assert len(rest.edges) == 3 and not rest.has_next
    ids = [n["id"] for _c, n in first.edges + rest.edges]
    assert len(set(ids)) == 5
    sent = fake.requests[-1]
    assert sent.operation == "ConvotTransactions" and sent.token_ok
    assert sent.path == f"/{fake.partner_org_id}/api/2025-07/graphql.json"
    assert sent.variables["types"] == ["APP_SUBSCRIPTION_SALE", "APP_USAGE_SALE", "APP_ONE_TIME_SALE",
                                       "APP_SALE_ADJUSTMENT", "APP_SALE_CREDIT"]


async def test_created_at_min_filters(fake, session):
    page = await client(fake, session).transactions(first=10, after=None, created_at_min="2025-05-04T00:00:00Z")
    assert len(page.edges) == 2


async def test_app_events_and_unknown_app(fake, session):
    app = next(iter(fake.apps))
    page = await client(fake, session).app_events(app, first=10, after=None, occurred_at_min=None)
    assert page.app_name == "Reviews Pro" and page.edges[0][1]["type"] == "RELATIONSHIP_INSTALLED"
    with pytest.raises(NotFound):
        await client(fake, session).app_events("gid://partners/App/404", first=10, after=None, occurred_at_min=None)


async def test_check_passes_with_the_right_token(fake, session):
    await client(fake, session).check()


async def test_wrong_token_is_unauthorized(fake, session):
    with pytest.raises(Unauthorized) as info:
        await client(fake, session, token="prtapi_wrong").check()
    assert info.value.status == 401 and not info.value.retryable


async def test_wrong_organisation_is_not_found(fake, session):
    with pytest.raises(NotFound):
        await client(fake, session, partner_org_id="999").check()


async def test_throttled_answer_is_retried_with_backoff(fake, session):
    sleeps = Sleeps()
    fake.fail_next("throttled", 2)
    page = await client(fake, session, sleeps).transactions(first=10, after=None, created_at_min=None)
    assert len(page.edges) == 5
    assert len(sleeps.calls) == 2 and 0.5 <= sleeps.calls[0] <= 1.0 and 1.0 <= sleeps.calls[1] <= 2.0
    assert len(fake.requests) == 3


async def test_http_429_honours_retry_after(fake, session):
    sleeps = Sleeps()
    fake.retry_after = "7"
    fake.fail_next("throttled_429")
    c = client(fake, session, sleeps, max_backoff=60.0)
    await c.check()
    assert sleeps.calls == [7.0] and c.throttled == 1


async def test_throttling_past_the_retry_budget_raises(fake, session):
    sleeps = Sleeps()
    fake.fail_always("throttled")
    with pytest.raises(Throttled):
        await client(fake, session, sleeps, throttle_retries=3).check()
    assert len(sleeps.calls) == 3 and len(fake.requests) == 4


@pytest.mark.parametrize("fault,error,status", [
    ("error_page", Unavailable, 500), ("bad_gateway", Unavailable, 502), ("garbage", BadResponse, 200),
    ("unauthorized", Unauthorized, 401),
])
async def test_faults_become_typed_errors(fake, session, fault, error, status):
    fake.fail_next(fault)
    with pytest.raises(error) as info:
        await client(fake, session).check()
    assert info.value.status == status
    assert fake.token not in info.value.describe()


async def test_hanging_api_times_out(fake, session):
    fake.fail_next("hang")
    with pytest.raises(Unavailable) as info:
        await client(fake, session, request_timeout=0.3).check()
    assert info.value.reason == "timed out"


async def test_connection_refused_is_unavailable(session):
    c = PartnerClient(session, base_url="http://127.0.0.1:9", version="2025-07", partner_org_id="1", token="t",
                      requests_per_second=1000.0)
    with pytest.raises(Unavailable):
        await c.check()


def test_interpret_graphql_errors():
    with pytest.raises(QueryError) as info:
        interpret(200, b'{"errors":[{"message":"Field \'x\' doesn\'t exist on type \'QueryRoot\'"}]}')
    assert "doesn't exist" in info.value.reason
    with pytest.raises(Throttled):
        interpret(200, b'{"errors":[{"message":"Throttled","extensions":{"code":"THROTTLED"}}]}')
    with pytest.raises(BadResponse):
        interpret(200, b'{"data": null}')
    with pytest.raises(BadResponse):
        interpret(200, b"[]")
    with pytest.raises(Unauthorized):
        interpret(403, b"<html>")
    assert interpret(200, b'{"data":{"a":1}}') == {"a": 1}


def test_throttle_delay():
    rng = random.Random(1)
    assert throttle_delay(0, 3.0, 60, rng) == 3.0
    assert throttle_delay(0, 300.0, 60, rng) == 60
    for attempt in range(10):
        delay = throttle_delay(attempt, None, 20, rng)
        ceiling = min(20, 2 ** attempt)
        assert ceiling / 2 <= delay <= ceiling
