"""Stripe webhook verification (pure: raw body + header + secret -> event or a stable error).

The signature is checked by Stripe's official library (``stripe.Webhook.construct_event``) on
the **raw** request body, with the tolerance (300 s) applied to the signed timestamp; the
library compares signatures in constant time. It does not refuse timestamps from the future,
so we also do (same tolerance): a captured signature cannot be post-dated.
"""

from __future__ import annotations

import time

import orjson
import stripe

from admin_api.billing.errors import BillingError
from convot.metrics import STRIPE_WEBHOOKS


def _timestamp(header: str) -> int | None:
    for item in header.split(","):
        key, _sep, value = item.strip().partition("=")
        if key == "t":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def verify_event(raw_body: bytes, signature_header: str | None, secret: str, *, tolerance: int = 300,
                 now: float | None = None) -> dict:
    """The verified event as a plain dict; raises :class:`BillingError` with a webhook code
    (counted in ``convot_stripe_webhook_events_total{outcome=<code>}``)."""
    try:
        return _verify_event(raw_body, signature_header, secret, tolerance, now)
    except BillingError as exc:
        STRIPE_WEBHOOKS.labels(exc.code).inc()
        raise


def _verify_event(raw_body: bytes, signature_header: str | None, secret: str, tolerance: int,
                  now: float | None) -> dict:
    if not secret:
        raise BillingError("billing_not_configured")
    try:
        stripe.Webhook.construct_event(raw_body, signature_header, secret, tolerance=tolerance)
    except stripe.SignatureVerificationError as exc:
        if "tolerance" in str(exc):
            raise BillingError("webhook_timestamp_outside_tolerance") from None
        raise BillingError("webhook_signature_invalid") from None
    except (ValueError, UnicodeDecodeError):
        raise BillingError("webhook_payload_invalid") from None
    signed_at = _timestamp(signature_header or "")
    current = time.time() if now is None else now
    if signed_at is None or signed_at > current + tolerance:
        raise BillingError("webhook_timestamp_outside_tolerance")
    event = orjson.loads(raw_body)
    if (not isinstance(event, dict) or event.get("object") != "event" or not isinstance(event.get("id"), str)
            or not isinstance(event.get("type"), str) or not isinstance(event.get("created"), int)
            or not isinstance((event.get("data") or {}).get("object"), dict)):
        raise BillingError("webhook_payload_invalid")
    return event
