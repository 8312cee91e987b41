"""Billing's errors: admin API errors (``admin_api/errors.py`` holds the codes and statuses)."""

from __future__ import annotations

from typing import Any

from admin_api.errors import ApiError

CODES = frozenset({
    "seat_limit_reached", "app_limit_reached", "no_billing_account", "plan_unknown", "plan_not_purchasable",
    "webhook_signature_invalid", "webhook_timestamp_outside_tolerance", "webhook_payload_invalid",
    "billing_not_configured", "billing_unavailable",
})


class BillingError(ApiError):
    def __init__(self, code: str, details: dict[str, Any] | None = None):
        if code not in CODES:
            raise ValueError(f"not a billing error code: {code!r}")
        super().__init__(code, details=details)
