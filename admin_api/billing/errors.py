"""Billing's stable error codes; the admin API's error table maps each to its HTTP status."""

from __future__ import annotations

from typing import Any

# code -> (HTTP status, message shown to the owner)
CODES: dict[str, tuple[int, str]] = {
    "seat_limit_reached": (409, "Your plan's seats are all taken (members and pending invites). Upgrade or free a seat."),
    "app_limit_reached": (409, "Your plan's apps are all used. Upgrade or delete an app."),
    "plan_unknown": (422, "No such plan."),
    "plan_not_purchasable": (422, "This plan cannot be bought through Checkout."),
    "billing_not_configured": (503, "Billing is not configured on this server."),
    "billing_unavailable": (503, "Stripe is unavailable right now. Try again in a moment."),
    "no_billing_account": (409, "This organisation has no Stripe customer yet: choose a plan first."),
    "webhook_signature_invalid": (400, "The Stripe-Signature header does not match the payload."),
    "webhook_timestamp_outside_tolerance": (400, "The Stripe-Signature timestamp is outside the tolerance."),
    "webhook_payload_invalid": (400, "The webhook payload is not a Stripe event."),
}


class BillingError(Exception):
    def __init__(self, code: str, details: dict[str, Any] | None = None):
        if code not in CODES:
            raise ValueError(f"unknown billing error code {code!r}")
        super().__init__(code)
        self.code = code
        self.status, self.message = CODES[code]
        self.details = details or {}
