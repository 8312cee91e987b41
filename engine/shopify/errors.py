"""The Shopify sync's error table: one stable code per failure, shown to owners and in metrics.

A connection's ``last_error`` is ``"<code>: <short reason>"``; the reason never contains the
token, response bodies or merchant data, only what an owner needs to act (HTTP status, the
GraphQL error message Shopify gave, how long to wait).
"""

from __future__ import annotations


class PartnerApiError(Exception):
    """Base of every Partner API failure; ``code`` is stable, ``retryable`` tells the sync."""

    code = "shopify_error"
    retryable = True

    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after

    def describe(self) -> str:
        return f"{self.code}: {self.reason}"


class Unauthorized(PartnerApiError):
    """401/403: the token is wrong, revoked, or lacks the financial permission."""

    code = "shopify_unauthorized"
    retryable = False


class NotFound(PartnerApiError):
    """404 or a null app: the Partner organisation id (or an app id) does not exist for this token."""

    code = "shopify_not_found"
    retryable = False


class Throttled(PartnerApiError):
    """HTTP 429 or a GraphQL error with extensions.code THROTTLED."""

    code = "shopify_throttled"


class Unavailable(PartnerApiError):
    """5xx, an HTML error page, a timeout or a broken connection."""

    code = "shopify_unavailable"


class QueryError(PartnerApiError):
    """GraphQL errors other than throttling (our query or arguments were refused)."""

    code = "shopify_query_error"
    retryable = False


class BadResponse(PartnerApiError):
    """The answer was not the JSON shape our query asks for."""

    code = "shopify_bad_response"


ERRORS = (Unauthorized, NotFound, Throttled, Unavailable, QueryError, BadResponse)
CODES = frozenset(cls.code for cls in ERRORS)
if len(CODES) != len(ERRORS):
    raise RuntimeError("engine.shopify.errors: two errors share a code")
