"""Webhook endpoints of an organisation: register, change, enable/disable, send a test, read the
delivery log.  Delivery itself runs in the engine workers (engine/webhooks.py, docs/webhooks.md).

Each endpoint has its own secret (``whsec_…``, encrypted at rest, bound to the row), shown at
creation and readable later by admins and owners; deliveries are signed with it.  Endpoints
must be ``https://`` on public hosts outside development.
"""

from __future__ import annotations

import uuid

from admin_api import keys
from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.rest import decode_cursor, encode_cursor
from admin_api.routing import RouteTable
from admin_api.schemas import Array, Boolean, Choice, DateTime, Integer, Nested, Object, Schema, String, Uuid
from convot.crypto import row_aad
from engine import webhooks as engine_webhooks

routes = RouteTable(tag="webhooks")

MAX_WEBHOOKS = 20
DELIVERY_STATUSES = ("pending", "delivered", "failed")


def secret_aad(org_id, webhook_id) -> bytes:
    return row_aad("webhooks", "secret_enc", org_id, webhook_id)


class Webhook(Schema):
    id = Uuid()
    url = String()
    events = Array(Choice(*engine_webhooks.EVENTS), max_items=len(engine_webhooks.EVENTS))
    enabled = Boolean()
    description = String()
    created_at = DateTime()
    updated_at = DateTime()


class WebhookList(Schema):
    items = Array(Nested(Webhook), max_items=MAX_WEBHOOKS)


class WebhookCreate(Schema):
    url = String(max_length=engine_webhooks.MAX_URL_LENGTH, example="https://hooks.example.com/convot")
    events = Array(Choice(*engine_webhooks.EVENTS), max_items=len(engine_webhooks.EVENTS),
                   example=["message.received", "conversation.resolved"])
    description = String(max_length=200, default="")
    enabled = Boolean(default=True)


class WebhookUpdate(Schema):
    url = String(max_length=engine_webhooks.MAX_URL_LENGTH, required=False)
    events = Array(Choice(*engine_webhooks.EVENTS), max_items=len(engine_webhooks.EVENTS), required=False)
    description = String(max_length=200, required=False)
    enabled = Boolean(required=False, description="false: nothing is sent; pending deliveries are marked failed")


class WebhookSecret(Schema):
    secret = String(description="whsec_…: the HMAC key of Convot-Signature (docs/webhooks.md)")


class WebhookCreated(Schema):
    """The new endpoint and its signing secret."""

    webhook = Nested(Webhook)
    secret = String()


class WebhookDelivery(Schema):
    id = Uuid()
    webhook_id = Uuid()
    event = String()
    event_id = String()
    status = Choice(*DELIVERY_STATUSES)
    attempts = Integer()
    last_status = Integer(nullable=True, description="HTTP status of the last attempt")
    last_error = String(nullable=True, description="timeout, connect_error, http_500, webhook_disabled, ...")
    created_at = DateTime()
    last_attempt_at = DateTime(nullable=True)
    next_attempt_at = DateTime(nullable=True, description="when pending: the next attempt")
    delivered_at = DateTime(nullable=True)


class WebhookDeliveryDetail(Schema):
    delivery = Nested(WebhookDelivery)
    payload = Object(max_keys=100, description="the JSON body sent")


class WebhookDeliveryPage(Schema):
    items = Array(Nested(WebhookDelivery), max_items=100, description="newest first")
    next_cursor = String(nullable=True, description="pass as `cursor` for older deliveries")


class DeliveryQuery(Schema):
    status = Choice(*DELIVERY_STATUSES, required=False)
    event = Choice(engine_webhooks.TEST_EVENT, *engine_webhooks.EVENTS, required=False)
    cursor = String(max_length=200, required=False)
    limit = Integer(minimum=1, maximum=100, default=25)


class TestSent(Schema):
    delivery_id = Uuid()
    event_id = String()


_COLUMNS = "SELECT id, url, events, enabled, description, created_at, updated_at FROM webhooks"
_DELIVERY = """SELECT id, webhook_id, event, event_id, status, attempts, last_status, last_error, created_at,
                      last_attempt_at, CASE WHEN status = 'pending' THEN next_attempt_at END AS next_attempt_at,
                      delivered_at FROM webhook_deliveries"""


def _view(row) -> Webhook:
    return Webhook(id=row["id"], url=row["url"], events=list(row["events"]), enabled=row["enabled"],
                   description=row["description"], created_at=row["created_at"], updated_at=row["updated_at"])


def _url(call: Call, url: str) -> str:
    problem = engine_webhooks.url_problem(url, call.config.admin_api.development)
    if problem is not None:
        raise ApiError("unprocessable_entity", details={"field": "url", "reason": problem})
    return url


def _events(values: list[str]) -> list[str]:
    events = sorted(set(values), key=engine_webhooks.EVENTS.index)
    if not events:
        raise ApiError("unprocessable_entity", details={"field": "events", "reason": "must name at least one event"})
    return events


async def _load(conn, org_id, webhook_id):
    row = await conn.fetchrow(_COLUMNS + " WHERE org_id = $1 AND id = $2", org_id, webhook_id)
    if row is None:
        raise ApiError("not_found")
    return row


@routes.route("GET", "/v1/orgs/{org_id}/webhooks", permission="webhooks.manage", api_scope="webhooks:read",
              response=WebhookList, summary="The organisation's webhook endpoints")
async def list_webhooks(call: Call) -> WebhookList:
    async with call.db() as conn:
        rows = await conn.fetch(_COLUMNS + " WHERE org_id = $1 ORDER BY created_at, id", call.org_id)
    return WebhookList(items=[_view(r) for r in rows])


@routes.route("POST", "/v1/orgs/{org_id}/webhooks", permission="webhooks.manage", api_scope="webhooks:write",
              body=WebhookCreate, response=WebhookCreated, status=201, errors=("conflict",),
              summary="Register an endpoint; its signing secret is in the answer")
async def create_webhook(call: Call) -> WebhookCreated:
    body = call.body
    url, events = _url(call, body.url), _events(body.events)
    webhook_id = uuid.uuid4()
    secret = engine_webhooks.new_secret()
    blob = call.app[keys.ENCRYPTOR].encrypt(secret.encode(), secret_aad(call.org_id, webhook_id))
    async with call.db() as conn:
        await conn.execute("SELECT 1 FROM organisations WHERE id = $1 FOR UPDATE", call.org_id)
        count = await conn.fetchval("SELECT count(*) FROM webhooks WHERE org_id = $1", call.org_id)
        if count >= MAX_WEBHOOKS:
            raise ApiError("conflict", f"An organisation has at most {MAX_WEBHOOKS} webhook endpoints.")
        await conn.execute(
            "INSERT INTO webhooks (id, org_id, url, secret_enc, events, enabled, description) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            webhook_id, call.org_id, url, blob, events, body.enabled, body.description)
        await call.audit(conn, "webhook.created", "webhook", webhook_id, {"events": events})
        row = await _load(conn, call.org_id, webhook_id)
    return WebhookCreated(webhook=_view(row), secret=secret)


@routes.route("GET", "/v1/orgs/{org_id}/webhooks/{webhook_id}", permission="webhooks.manage",
              api_scope="webhooks:read", response=Webhook, summary="One endpoint")
async def get_webhook(call: Call) -> Webhook:
    async with call.db() as conn:
        return _view(await _load(conn, call.org_id, call.path["webhook_id"]))


@routes.route("PATCH", "/v1/orgs/{org_id}/webhooks/{webhook_id}", permission="webhooks.manage",
              api_scope="webhooks:write", body=WebhookUpdate, response=Webhook,
              summary="Change URL, events or description; enable or disable")
async def update_webhook(call: Call) -> Webhook:
    body, webhook_id = call.body, call.path["webhook_id"]
    changes: dict = {}
    if body.is_set("url"):
        changes["url"] = _url(call, body.url)
    if body.is_set("events"):
        changes["events"] = _events(body.events)
    if body.is_set("description"):
        changes["description"] = body.description
    if body.is_set("enabled"):
        changes["enabled"] = body.enabled
    async with call.db() as conn:
        await _load(conn, call.org_id, webhook_id)
        if changes:
            sets = ", ".join(f"{c} = ${i + 3}" for i, c in enumerate(changes))
            await conn.execute(f"UPDATE webhooks SET {sets}, updated_at = now() WHERE org_id = $1 AND id = $2",
                               call.org_id, webhook_id, *changes.values())
            if changes.get("enabled") is False:
                await conn.execute(
                    "UPDATE webhook_deliveries SET status = 'failed', last_error = 'webhook_disabled' "
                    "WHERE org_id = $1 AND webhook_id = $2 AND status = 'pending'", call.org_id, webhook_id)
            await call.audit(conn, "webhook.updated", "webhook", webhook_id, {"fields": sorted(changes)})
        return _view(await _load(conn, call.org_id, webhook_id))


@routes.route("DELETE", "/v1/orgs/{org_id}/webhooks/{webhook_id}", permission="webhooks.manage",
              api_scope="webhooks:write", status=204, summary="Delete an endpoint and its delivery log")
async def delete_webhook(call: Call) -> None:
    webhook_id = call.path["webhook_id"]
    async with call.db() as conn:
        status = await conn.execute("DELETE FROM webhooks WHERE org_id = $1 AND id = $2", call.org_id, webhook_id)
        if status != "DELETE 1":
            raise ApiError("not_found")
        await call.audit(conn, "webhook.deleted", "webhook", webhook_id)


@routes.route("GET", "/v1/orgs/{org_id}/webhooks/{webhook_id}/secret", permission="webhooks.manage",
              response=WebhookSecret, summary="Read the endpoint's signing secret (audited)")
async def get_webhook_secret(call: Call) -> WebhookSecret:
    webhook_id = call.path["webhook_id"]
    async with call.db() as conn:
        blob = await conn.fetchval("SELECT secret_enc FROM webhooks WHERE org_id = $1 AND id = $2",
                                   call.org_id, webhook_id)
        if blob is None:
            raise ApiError("not_found")
        await call.audit(conn, "webhook.secret_viewed", "webhook", webhook_id)
    secret = call.app[keys.ENCRYPTOR].decrypt(blob, secret_aad(call.org_id, webhook_id)).decode()
    return WebhookSecret(secret=secret)


@routes.route("POST", "/v1/orgs/{org_id}/webhooks/{webhook_id}/secret/rotate", permission="webhooks.manage",
              reauth=True, response=WebhookSecret, summary="Replace the signing secret",
              description="Attempts from now on are signed with the new secret.")
async def rotate_webhook_secret(call: Call) -> WebhookSecret:
    webhook_id = call.path["webhook_id"]
    secret = engine_webhooks.new_secret()
    blob = call.app[keys.ENCRYPTOR].encrypt(secret.encode(), secret_aad(call.org_id, webhook_id))
    async with call.db() as conn:
        status = await conn.execute("UPDATE webhooks SET secret_enc = $3, updated_at = now() "
                                    "WHERE org_id = $1 AND id = $2", call.org_id, webhook_id, blob)
        if status != "UPDATE 1":
            raise ApiError("not_found")
        await call.audit(conn, "webhook.secret_rotated", "webhook", webhook_id)
    return WebhookSecret(secret=secret)


@routes.route("POST", "/v1/orgs/{org_id}/webhooks/{webhook_id}/test", permission="webhooks.manage",
              api_scope="webhooks:write", response=TestSent, status=202, errors=("conflict",),
              summary="Send a `webhook.test` event to this endpoint",
              description="Delivered like any event (signed, retried); follow it in the delivery log.")
async def send_test(call: Call) -> TestSent:
    webhook_id = call.path["webhook_id"]
    event = engine_webhooks.test_event(call.org_id, webhook_id)
    async with call.db() as conn:
        row = await _load(conn, call.org_id, webhook_id)
        if not row["enabled"]:
            raise ApiError("conflict", "The endpoint is disabled.")
        await engine_webhooks.enqueue(conn, call.org_id, [event], webhook_id=webhook_id)
        delivery = await conn.fetchval("SELECT id FROM webhook_deliveries WHERE org_id = $1 AND webhook_id = $2 "
                                       "AND event_id = $3", call.org_id, webhook_id, event.id)
    return TestSent(delivery_id=delivery, event_id=event.id)


@routes.route("GET", "/v1/orgs/{org_id}/webhooks/{webhook_id}/deliveries", permission="webhooks.manage",
              api_scope="webhooks:read", query=DeliveryQuery, response=WebhookDeliveryPage,
              summary="The endpoint's delivery log, newest first")
async def list_deliveries(call: Call) -> WebhookDeliveryPage:
    q = call.query
    conds, args = ["org_id = $1", "webhook_id = $2"], [call.org_id, call.path["webhook_id"]]
    for name, column in (("status", "status"), ("event", "event")):
        if q.is_set(name):
            args.append(getattr(q, name))
            conds.append(f"{column} = ${len(args)}")
    if q.is_set("cursor"):
        created, after = decode_cursor(q.cursor)
        args.extend([created, after])
        conds.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
    args.append(q.limit + 1)
    async with call.db() as conn:
        await _load(conn, call.org_id, call.path["webhook_id"])
        rows = await conn.fetch(f"{_DELIVERY} WHERE {' AND '.join(conds)} ORDER BY created_at DESC, id DESC "
                                f"LIMIT ${len(args)}", *args)
    more = len(rows) > q.limit
    rows = rows[:q.limit]
    return WebhookDeliveryPage(items=[WebhookDelivery(**dict(r)) for r in rows],
                               next_cursor=encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None)


@routes.route("GET", "/v1/orgs/{org_id}/webhooks/{webhook_id}/deliveries/{delivery_id}", permission="webhooks.manage",
              api_scope="webhooks:read", response=WebhookDeliveryDetail, summary="One delivery with its payload")
async def get_delivery(call: Call) -> WebhookDeliveryDetail:
    async with call.db() as conn:
        row = await conn.fetchrow(f"{_DELIVERY.replace('delivered_at FROM', 'delivered_at, payload FROM')} "
                                  "WHERE org_id = $1 AND webhook_id = $2 AND id = $3",
                                  call.org_id, call.path["webhook_id"], call.path["delivery_id"])
    if row is None:
        raise ApiError("not_found")
    values = dict(row)
    payload = values.pop("payload")
    return WebhookDeliveryDetail(delivery=WebhookDelivery(**values), payload=payload)
