"""A fake of the few Stripe endpoints Convot calls, plus events signed as Stripe signs them.

Endpoints (form-encoded like Stripe's, bearer secret key): ``POST /v1/customers``,
``POST /v1/checkout/sessions``, ``POST /v1/billing_portal/sessions``. ``Idempotency-Key`` works
as at Stripe: the same key with the same parameters replays the first answer (with the
``Idempotent-Replayed: true`` header); with other parameters it is a 400 ``idempotency_error``.
Faults: ``unavailable`` (500 ``api_error``) and ``hang``.

:func:`sign` computes ``Stripe-Signature`` independently of the stripe library (HMAC-SHA256 of
``"{t}.{payload}"`` with the endpoint secret, ``t=...,v1=...``), so the tests check our
verification against the documented scheme, not against the library's own signer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

API_VERSION = "2026-10-28.endive"
_KEY = re.compile(r"([^\[\]]+)|\[([^\[\]]*)\]")


def _set_path(target: dict, path: list[str], value: str) -> None:
    node: Any = target
    for i, part in enumerate(path):
        last = i == len(path) - 1
        nxt_is_index = not last and path[i + 1].isdigit()
        if isinstance(node, list):
            index = int(part)
            while len(node) <= index:
                node.append({} if not last else None)
            if last:
                node[index] = value
            else:
                if not isinstance(node[index], (dict, list)) or (nxt_is_index and not isinstance(node[index], list)):
                    node[index] = [] if nxt_is_index else {}
                node = node[index]
        else:
            if last:
                node[part] = value
            else:
                if part not in node:
                    node[part] = [] if nxt_is_index else {}
                node = node[part]


def parse_form(body: str) -> dict:
    """``line_items[0][price]=p&metadata[a]=b`` -> {"line_items": [{"price": "p"}], "metadata": {"a": "b"}}."""
    out: dict = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = [m.group(1) if m.group(1) is not None else m.group(2) for m in _KEY.finditer(key)]
        _set_path(out, parts, value)
    return out


def _error(status: int, type_: str, message: str, code: str | None = None) -> web.Response:
    err = {"type": type_, "message": message}
    if code:
        err["code"] = code
    return web.json_response({"error": err}, status=status,
                             headers={"Request-Id": f"req_{secrets.token_hex(7)}"})


async def _close_after_response(_request: web.Request, response: web.StreamResponse) -> None:
    # No keep-alive: a long-lived fake (module fixture) leaves no connection task behind a test.
    response.force_close()


@dataclass
class FakeStripe:
    secret_key: str = "sk_test_51Convot000000000000000000000000000000000000"
    customers: dict[str, dict] = field(default_factory=dict)
    checkout_sessions: dict[str, dict] = field(default_factory=dict)
    portal_sessions: dict[str, dict] = field(default_factory=dict)
    requests: list[tuple[str, dict, str | None]] = field(default_factory=list)   # (path, params, idempotency key)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._idempotent: dict[str, tuple[str, dict, dict]] = {}
        self._faults: deque[str] = deque()
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def fail_next(self, kind: str, times: int = 1) -> None:
        if kind not in ("unavailable", "hang"):
            raise ValueError(kind)
        self._faults.extend([kind] * times)

    async def __aenter__(self) -> "FakeStripe":
        app = web.Application()
        app.router.add_post("/v1/customers", self._customers)
        app.router.add_post("/v1/checkout/sessions", self._checkout)
        app.router.add_post("/v1/billing_portal/sessions", self._portal)
        app.on_response_prepare.append(_close_after_response)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}{secrets.token_hex(8)}"

    async def _handle(self, request: web.Request, create) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if not hmac.compare_digest(auth, f"Bearer {self.secret_key}"):
            return _error(401, "invalid_request_error", "Invalid API Key provided: sk_test_****")
        params = parse_form(await request.text())
        key = request.headers.get("Idempotency-Key")
        self.requests.append((request.path, params, key))
        fault = self._faults.popleft() if self._faults else None
        if fault == "hang":
            await self._release.wait()
            return _error(500, "api_error", "closing")
        if fault == "unavailable":
            return _error(500, "api_error", "An unknown error occurred")
        if key is not None and key in self._idempotent:
            path, first_params, answer = self._idempotent[key]
            if path != request.path or first_params != params:
                return _error(400, "idempotency_error",
                              "Keys for idempotent requests can only be used with the same parameters they were first used with.")
            return web.json_response(answer, headers={"Idempotent-Replayed": "true", "Idempotency-Key": key})
        answer = create(params)
        if key is not None:
            self._idempotent[key] = (request.path, params, answer)
        return web.json_response(answer, headers={"Request-Id": f"req_{secrets.token_hex(7)}",
                                                  "Stripe-Version": API_VERSION})

    async def _customers(self, request):
        def create(p):
            cid = self._id("cus")
            obj = {"id": cid, "object": "customer", "address": None, "balance": 0, "created": int(time.time()),
                   "currency": None, "default_source": None, "delinquent": False, "description": None,
                   "email": p.get("email"), "invoice_prefix": secrets.token_hex(4).upper(),
                   "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None,
                                        "rendering_options": None},
                   "livemode": False, "metadata": p.get("metadata", {}), "name": p.get("name"), "phone": None,
                   "preferred_locales": [], "shipping": None, "tax_exempt": "none", "test_clock": None}
            self.customers[cid] = obj
            return obj
        return await self._handle(request, create)

    async def _checkout(self, request):
        def create(p):
            sid = "cs_test_" + secrets.token_hex(24)
            obj = {"id": sid, "object": "checkout.session", "mode": p.get("mode"), "customer": p.get("customer"),
                   "client_reference_id": p.get("client_reference_id"), "metadata": p.get("metadata", {}),
                   "success_url": p.get("success_url"), "cancel_url": p.get("cancel_url"),
                   "status": "open", "payment_status": "unpaid", "subscription": None, "currency": "usd",
                   "amount_total": None, "expires_at": int(time.time()) + 86400, "livemode": False,
                   "url": f"https://checkout.stripe.com/c/pay/{sid}#fid{secrets.token_hex(6)}",
                   "_line_items": p.get("line_items", [])}
            self.checkout_sessions[sid] = obj
            return {k: v for k, v in obj.items() if not k.startswith("_")}
        return await self._handle(request, create)

    async def _portal(self, request):
        def create(p):
            if p.get("customer") not in self.customers:
                raise web.HTTPBadRequest(text=orjson.dumps({"error": {"type": "invalid_request_error",
                                                                      "message": "No such customer"}}).decode(),
                                         content_type="application/json")
            pid = self._id("bps")
            obj = {"id": pid, "object": "billing_portal.session", "configuration": self._id("bpc"),
                   "created": int(time.time()), "customer": p["customer"], "flow": None, "livemode": False,
                   "locale": None, "on_behalf_of": None, "return_url": p.get("return_url"),
                   "url": f"https://billing.stripe.com/p/session/test_{secrets.token_hex(20)}"}
            self.portal_sessions[pid] = obj
            return obj
        return await self._handle(request, create)


# -------------------------------------------------------------------------------------------------
# Events as Stripe sends them
# -------------------------------------------------------------------------------------------------

def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(type_: str, obj: dict, *, created: int, event_id: str | None = None, previous: dict | None = None) -> bytes:
    body = {
        "id": event_id or "evt_" + secrets.token_hex(12), "object": "event", "api_version": API_VERSION,
        "created": created, "data": {"object": obj, **({"previous_attributes": previous} if previous else {})},
        "livemode": False, "pending_webhooks": 1,
        "request": {"id": f"req_{secrets.token_hex(7)}", "idempotency_key": None}, "type": type_,
    }
    return orjson.dumps(body)


def subscription(sub_id: str, customer: str, price_id: str, status: str, *, period_end: int,
                 cancel_at_period_end: bool = False, metadata: dict | None = None) -> dict:
    """A subscription object of API version 2025-03-31 and later (period on the items)."""
    return {
        "id": sub_id, "object": "subscription", "billing_cycle_anchor": period_end - 30 * 86400,
        "cancel_at": None, "cancel_at_period_end": cancel_at_period_end, "canceled_at": None,
        "collection_method": "charge_automatically", "created": period_end - 30 * 86400, "currency": "usd",
        "customer": customer, "default_payment_method": "pm_" + secrets.token_hex(8), "ended_at": None,
        "items": {"object": "list", "data": [{
            "id": "si_" + secrets.token_hex(7), "object": "subscription_item",
            "current_period_start": period_end - 30 * 86400, "current_period_end": period_end,
            "price": {"id": price_id, "object": "price", "active": True, "currency": "usd", "product": "prod_convot",
                      "recurring": {"interval": "month", "interval_count": 1}, "type": "recurring",
                      "unit_amount": 4900},
            "quantity": 1, "subscription": sub_id}], "has_more": False, "total_count": 1,
            "url": f"/v1/subscription_items?subscription={sub_id}"},
        "latest_invoice": "in_" + secrets.token_hex(8), "livemode": False, "metadata": metadata or {},
        "start_date": period_end - 30 * 86400, "status": status, "trial_end": None, "trial_start": None,
    }


def invoice(customer: str, sub_id: str, status: str) -> dict:
    """An invoice of API version 2025-03-31 and later (subscription under parent)."""
    return {
        "id": "in_" + secrets.token_hex(8), "object": "invoice", "amount_due": 4900,
        "amount_paid": 4900 if status == "paid" else 0, "attempt_count": 1, "billing_reason": "subscription_cycle",
        "collection_method": "charge_automatically", "currency": "usd", "customer": customer, "livemode": False,
        "parent": {"type": "subscription_details", "quote_details": None,
                   "subscription_details": {"metadata": {}, "subscription": sub_id}},
        "status": status,
    }


def checkout_completed(session_id: str, customer: str, sub_id: str, org_id: str, plan: str) -> dict:
    return {
        "id": session_id, "object": "checkout.session", "mode": "subscription", "customer": customer,
        "client_reference_id": org_id, "metadata": {"org_id": org_id, "plan": plan}, "payment_status": "paid",
        "status": "complete", "subscription": sub_id, "currency": "usd", "amount_total": 4900, "livemode": False,
    }
