"""The request pipeline every declared route runs through (see docs/admin-api.md).

authentication (resolver chain) -> request rate limit -> CSRF -> path parameters -> session level (MFA step) ->
organisation scope and permission -> query/body validation -> re-authentication -> handler ->
serialisation of the declared response schema.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import uuid

import orjson
from aiohttp import web

from admin_api import keys, permissions
from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.principal import Membership, Principal
from admin_api.routing import JSON, UNSAFE_METHODS, Route
from admin_api.schemas import Schema, SchemaError
from admin_api.throttle import Limit
from convot.db import scoped

# Monitoring is never throttled.
UNTHROTTLED = frozenset({"/healthz", "/metrics"})


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def authenticate(request: web.Request) -> Principal | None:
    """Ask each resolver in turn; the first that recognises the credentials answers."""
    for resolver in request.app[keys.RESOLVERS]:
        principal = await resolver(request)
        if principal is not None:
            return principal
    return None


def check_csrf(request: web.Request, route: Route, principal: Principal | None, origin_allowed) -> None:
    if request.method not in UNSAFE_METHODS:
        return
    if route.cors:
        return  # called from shops' pages by design, without cookies; the handler checks the Origin
    origin = request.headers.get("Origin")
    if origin is not None and not origin_allowed(origin):
        raise ApiError("csrf_failed")
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        raise ApiError("csrf_failed")
    if route.permission == permissions.PUBLIC or principal is None or principal.via != "cookie":
        return
    token = request.headers.get("X-CSRF-Token", "")
    if not token or len(token) > 200 or principal.session is None or not hmac.compare_digest(
            sha256_hex(token), principal.session.csrf_hash):
        raise ApiError("csrf_failed")


async def load_membership(pool, org_id: uuid.UUID, user_id: uuid.UUID) -> Membership | None:
    async with scoped(pool, org_id=org_id, user_id=user_id) as conn:
        row = await conn.fetchrow(
            """SELECT m.role, m.overrides, m.token_version, o.super_owner_id = m.user_id AS is_super_owner,
                      o.require_mfa
               FROM members m JOIN organisations o ON o.id = m.org_id
               WHERE m.org_id = $1 AND m.user_id = $2""", org_id, user_id)
    if row is None:
        return None
    return Membership(org_id=org_id, user_id=user_id, role=row["role"], overrides=dict(row["overrides"] or {}),
                      token_version=row["token_version"], is_super_owner=row["is_super_owner"],
                      require_mfa=row["require_mfa"])


async def authorize_org(call: Call) -> None:
    route, principal, org_id = call.route, call.principal, call.org_id
    if principal.kind == "user":
        member = await load_membership(call.app[keys.DB], org_id, principal.user_id)
        if member is None:
            raise ApiError("not_found")  # never tell a non-member that the organisation exists
        call.member = member
        if member.require_mfa and not principal.mfa_enabled:
            raise ApiError("mfa_enrollment_required", details={"setup": "/v1/me/mfa/totp/setup"})
        if not member.allows(route.permission):
            raise ApiError("forbidden", details={"permission": route.permission})
    elif principal.kind == "api_key":
        if principal.org_id != org_id:
            raise ApiError("not_found")
        if route.api_scope is None or route.api_scope not in principal.scopes:
            raise ApiError("forbidden", details={"scope": route.api_scope} if route.api_scope else {})
    else:
        raise ApiError("forbidden")


def parse_path(route: Route, request: web.Request) -> dict:
    values = {}
    for name in route.path_params:
        try:
            values[name] = route.param_field(name).parse(request.match_info.get(name, ""), name, True)
        except SchemaError:
            raise ApiError("not_found") from None
    return values


def parse_query(route: Route, request: web.Request) -> Schema | None:
    if route.query is None:
        if request.query:
            raise ApiError("unprocessable_entity", details={"field": next(iter(request.query)), "reason": "is not a known parameter"})
        return None
    data = {}
    for key in request.query:
        if len(request.query.getall(key)) > 1:
            raise ApiError("unprocessable_entity", details={"field": key, "reason": "is given twice"})
        data[key] = request.query[key]
    try:
        return route.query.parse(data, from_text=True)
    except SchemaError as exc:
        raise ApiError("unprocessable_entity", details={"field": exc.field, "reason": exc.reason}) from None


async def parse_body(route: Route, request: web.Request) -> Schema | None:
    if route.raw_body:
        return None  # the handler reads request.read() itself (bounded by client_max_size)
    if route.body is None:
        if request.body_exists and await request.read():
            raise ApiError("unprocessable_entity", details={"field": "body", "reason": "this route takes no body"})
        return None
    if request.content_type != "application/json":
        raise ApiError("unsupported_media_type")
    raw = await request.read()  # bounded by the application's client_max_size (413 beyond)
    try:
        data = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        raise ApiError("bad_request", "The body is not valid JSON.") from None
    try:
        return route.body.parse(data)
    except SchemaError as exc:
        raise ApiError("unprocessable_entity", details={"field": exc.field, "reason": exc.reason}) from None


def check_reauth(call: Call) -> None:
    session = call.principal.session if call.principal else None
    if session is None:
        raise ApiError("reauth_required")
    window = dt.timedelta(seconds=call.config.admin_api.reauth_seconds)
    if session.reauth_at is None or session.reauth_at + window < dt.datetime.now(dt.timezone.utc):
        raise ApiError("reauth_required", details={"reauth": "/v1/auth/reauth"})


def render(route: Route, result) -> web.StreamResponse:
    if isinstance(result, web.StreamResponse):
        return result
    if route.status == 204:
        if result is not None:
            raise TypeError(f"{route.method} {route.path} answers 204 but returned a value")
        return web.Response(status=204)
    if route.response is None or not isinstance(result, route.response):
        raise TypeError(f"{route.method} {route.path} must return {route.response.__name__ if route.response else 'a Response'}")
    return web.Response(body=orjson.dumps(result.dump()), status=route.status, content_type=JSON)


@functools.lru_cache(maxsize=8)
def request_limits(config) -> tuple[Limit, Limit]:
    a = config.admin_api
    return Limit("requests_session", a.session_rate_limit, 60), Limit("requests_ip", a.ip_rate_limit, 60)


async def limit_requests(call: Call) -> None:
    """Every API is rate-limited: per session when signed in, per client IP without credentials.
    (API keys have their own budget, applied by their resolver.)"""
    if call.route.path in UNTHROTTLED:
        return
    per_session, per_ip = request_limits(call.config)
    principal = call.principal
    if principal is None:
        await call.app[keys.THROTTLE].take((per_ip, call.ip))
    elif principal.session is not None:
        await call.app[keys.THROTTLE].take((per_session, principal.session.id))


async def run_route(route: Route, request: web.Request) -> web.StreamResponse:
    app = request.app
    policy = app[keys.SECURITY]
    call = Call(request, route, policy.client_ip(request.remote, request.headers.get("X-Forwarded-For")))
    request[keys.CALL] = call

    try:
        call.principal = await authenticate(request)
    except ApiError:
        if route.permission != permissions.PUBLIC:
            raise
        call.principal = None  # a stale cookie does not stop sign-in or sign-up
    principal = call.principal
    await limit_requests(call)
    if route.permission != permissions.PUBLIC and principal is None:
        raise ApiError("unauthorized")

    check_csrf(request, route, principal, policy.origin_allowed)
    call.path = parse_path(route, request)

    if route.permission not in (permissions.PUBLIC, permissions.SESSION_PARTIAL) and principal.mfa_pending:
        raise ApiError("mfa_required", details={"verify": "/v1/auth/mfa"})
    if route.permission in (permissions.SESSION, permissions.SESSION_PARTIAL) and principal.kind != "user":
        raise ApiError("forbidden")
    if route.org_scoped:
        await authorize_org(call)

    call.query = parse_query(route, request)
    call.body = await parse_body(route, request)
    if route.reauth:
        check_reauth(call)

    response = render(route, await route.handler(call))
    call.apply_cookies(response)
    return response
