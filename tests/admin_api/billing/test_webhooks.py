"""Stripe-Signature verification on the raw body (signed here as Stripe documents it)."""

import time

import orjson
import pytest

from admin_api.billing.errors import BillingError
from admin_api.billing.webhooks import verify_event
from tests.admin_api.conftest import remember
from tests.fakes.stripe_api import event, sign, subscription

SECRET = "whsec_test_5f1b0c7e2a9d4e6f8a1b3c5d7e9f0a2b"
remember(SECRET)


def body(created=None):
    sub = subscription("sub_1", "cus_1", "price_1Team", "active", period_end=int(time.time()) + 86400)
    return event("customer.subscription.updated", sub, created=created or int(time.time()))


def code(raw, header, **kw):
    with pytest.raises(BillingError) as info:
        verify_event(raw, header, SECRET, **kw)
    return info.value.code


def test_signed_event_is_accepted():
    raw = body()
    result = verify_event(raw, sign(raw, SECRET), SECRET)
    assert result["type"] == "customer.subscription.updated" and result["data"]["object"]["id"] == "sub_1"


def test_signature_covers_the_raw_bytes():
    raw = body()
    header = sign(raw, SECRET)
    # The same JSON re-serialised (spacing) no longer matches: verification is on the raw body.
    reformatted = orjson.dumps(orjson.loads(raw), option=orjson.OPT_INDENT_2)
    assert code(reformatted, header) == "webhook_signature_invalid"


@pytest.mark.parametrize("header", [
    None, "", "garbage", "t=abc,v1=00", "v1=deadbeef",
])
def test_malformed_headers_are_refused(header):
    assert code(body(), header) == "webhook_signature_invalid"


def test_wrong_secret_or_tampered_body_is_refused():
    raw = body()
    assert code(raw, sign(raw, "whsec_someone_else")) == "webhook_signature_invalid"
    tampered = raw.replace(b'"active"', b'"canceled"')
    assert code(tampered, sign(raw, SECRET)) == "webhook_signature_invalid"


def test_stale_timestamp_is_refused():
    raw = body()
    old = int(time.time()) - 301
    assert code(raw, sign(raw, SECRET, timestamp=old)) == "webhook_timestamp_outside_tolerance"
    # Inside the 5 minutes it is fine.
    assert verify_event(raw, sign(raw, SECRET, timestamp=int(time.time()) - 240), SECRET)["id"]


def test_post_dated_timestamp_is_refused():
    raw = body()
    assert code(raw, sign(raw, SECRET, timestamp=int(time.time()) + 3600)) == "webhook_timestamp_outside_tolerance"


def test_one_of_several_signatures_may_match():
    raw = body()
    t = int(time.time())
    good = sign(raw, SECRET, timestamp=t).split(",")[1]
    header = f"t={t},v1={'0' * 64},{good}"
    assert verify_event(raw, header, SECRET)["object"] == "event"


def test_signed_non_event_is_refused():
    raw = b'{"hello": "world"}'
    assert code(raw, sign(raw, SECRET)) == "webhook_payload_invalid"


def test_no_secret_configured():
    raw = body()
    with pytest.raises(BillingError) as info:
        verify_event(raw, sign(raw, SECRET), "")
    assert info.value.code == "billing_not_configured"
