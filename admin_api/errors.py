"""The admin API's one table of error codes.

Handlers and middleware raise :class:`ApiError` with a code from :data:`ERRORS`; the error
middleware is the single place that turns it into an HTTP status and the envelope
``{"error": {"code", "message", "details"}}``.  Codes are stable: clients branch on them, so a
code is never renamed or reused, and the registry refuses duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ErrorKind:
    code: str
    status: int
    message: str


class _Registry(dict):
    def add(self, code: str, status: int, message: str) -> None:
        if code in self:
            raise ValueError(f"error code {code!r} registered twice")
        self[code] = ErrorKind(code, status, message)


ERRORS: _Registry = _Registry()
for _code, _status, _message in (
    ("bad_request", 400, "The request is malformed."),
    ("token_invalid", 400, "This link is invalid, expired or already used."),
    ("unauthorized", 401, "Sign in first."),
    ("invalid_credentials", 401, "Wrong email or password."),
    ("mfa_required", 401, "Enter the code from your authenticator app."),
    ("mfa_invalid", 401, "That code is wrong, expired or already used."),
    ("forbidden", 403, "Your role does not allow this."),
    ("csrf_failed", 403, "The request's CSRF token or origin is missing or wrong."),
    ("reauth_required", 403, "Confirm your password to continue."),
    ("mfa_enrollment_required", 403, "This organisation requires two-factor authentication: set it up first."),
    ("email_unverified", 403, "Verify your email address first: we sent you a new link."),
    ("identity_verification_required", 403, "This app requires verified identities."),
    ("not_found", 404, "Not found."),
    ("method_not_allowed", 405, "Method not allowed."),
    ("conflict", 409, "The request conflicts with the current state."),
    ("payload_too_large", 413, "The request body is too large."),
    ("unsupported_media_type", 415, "Send the body as application/json."),
    ("unprocessable_entity", 422, "The request has invalid fields."),
    ("rate_limited", 429, "Too many attempts. Try again later."),
    ("internal_error", 500, "Something went wrong on our side."),
    # billing and Shopify (issue 8; docs/billing.md, docs/revenue.md)
    ("seat_limit_reached", 409, "Your plan's seats are all taken (members and pending invites). Upgrade or free a seat."),
    ("app_limit_reached", 409, "Your plan's apps are all used. Upgrade or delete an app."),
    ("no_billing_account", 409, "This organisation has no Stripe customer yet: choose a plan first."),
    ("plan_unknown", 422, "No such plan."),
    ("plan_not_purchasable", 422, "This plan cannot be bought through Checkout."),
    ("shopify_connection_failed", 422, "Shopify refused the Partner organisation id or token."),
    ("webhook_signature_invalid", 400, "The Stripe-Signature header does not match the payload."),
    ("webhook_timestamp_outside_tolerance", 400, "The Stripe-Signature timestamp is outside the tolerance."),
    ("webhook_payload_invalid", 400, "The webhook payload is not a Stripe event."),
    ("billing_not_configured", 503, "Billing is not configured on this server."),
    ("billing_unavailable", 503, "Stripe is unavailable right now. Try again in a moment."),
    ("shopify_unavailable", 503, "Shopify is unavailable right now. Try again in a moment."),
    ("service_unavailable", 503, "The service is temporarily unavailable."),
):
    ERRORS.add(_code, _status, _message)


class ApiError(Exception):
    """An answer with a stable error code.  ``message`` and ``details`` must hold nothing secret."""

    def __init__(self, code: str, message: str | None = None, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        if code not in ERRORS:
            raise ValueError(f"unknown error code {code!r}")
        self.kind = ERRORS[code]
        self.code = code
        self.message = message or self.kind.message
        self.details = details or {}
        self.headers = headers or {}
        super().__init__(code)

    @property
    def status(self) -> int:
        return self.kind.status

    def envelope(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def status_code_for(status: int) -> str:
    """The generic code for an HTTP status raised by aiohttp itself (404 route, 405, 413...)."""
    return {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
            405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
            415: "unsupported_media_type", 422: "unprocessable_entity", 429: "rate_limited",
            503: "service_unavailable"}.get(status, "internal_error" if status >= 500 else "bad_request")
