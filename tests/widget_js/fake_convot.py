"""TEMPORARY test scaffolding: a stand-in for the admin API's widget routes and the gateway.

The widget tests need a server until the real ones land (issue 5: widget session endpoint;
gateway: docs/protocol.md). This fake serves, on one origin (the "API"):

  GET  /widget/loader.js, /widget/widget.js   the built files from widget_js/dist
  POST /v1/widget/session                     the contract of docs/widget.md (CORS for the shop origin)
  GET  /gateway                               websocket speaking the frames of docs/protocol.md

and, on a second origin (the "shop"), host pages with the embed snippet. The agent side is
driven from Python (`agent_message`, `agent_typing`, ...). It keeps state in memory, applies
the protocol's rules (idempotent sends by client_msg_id, per-conversation sequence numbers,
resume, history, in-band token refresh, close codes) and records every frame it receives so
tests can assert what the widget sent. Replace with the real services when they exist.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import WSMsgType, web

from convot.embedded import free_port

DIST = Path(__file__).resolve().parents[2] / "widget_js" / "dist"
APP_ID = "app_test123"
IDENTITY_SECRET = "5f" * 32
BASE_MS = 1_736_935_200_000       # 2025-01-15 10:00 UTC: fixed clock, stable screenshots
AGENTS = {
    "6b3c3f0e-0000-4000-8000-000000000001": {"name": "Alice Martin", "avatar_url": None},
    "6b3c3f0e-0000-4000-8000-000000000002": {"name": "Bob Lee", "avatar_url": None},
}
ALICE = "6b3c3f0e-0000-4000-8000-000000000001"
BOB = "6b3c3f0e-0000-4000-8000-000000000002"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def user_hash(value: str, secret: str = IDENTITY_SECRET) -> str:
    # Keyed by the secret's text (64 hex characters), like admin_api/identity.py.
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()


@dataclass
class Contact:
    id: str
    external_id: str | None = None
    email: str | None = None
    name: str | None = None
    company: str | None = None
    phone: str | None = None
    avatar_url: str | None = None
    custom_data: dict = field(default_factory=dict)
    verified: bool = False
    shop: str | None = None
    shop_verified: bool = False


@dataclass
class Conversation:
    id: str
    contact_id: str
    status: str = "open"
    messages: list = field(default_factory=list)        # message objects, seq = index + 1
    by_cid: dict = field(default_factory=dict)          # client_msg_id -> message
    shopper_read: int = 0
    deleted: bool = False


@dataclass
class Socket:
    ws: web.WebSocketResponse
    id: str
    contact_id: str | None = None
    token: str | None = None
    exp: int = 0
    expiry: asyncio.TimerHandle | None = None


class FakeConvot:
    def __init__(self):
        self.api_port = free_port()
        self.shop_port = free_port()
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.shop = f"http://127.0.0.1:{self.shop_port}"
        self.app_name = "Northwind Support"
        self.settings = {"color": "#0f766e", "greeting": "Hi! Ask us anything about your store.",
                         "email_prompt": False}
        self.require_verification = False
        self.token_ttl = 600
        self.team_online = True
        self.contacts: dict[str, Contact] = {}
        self.visitors: dict[str, str] = {}                 # visitor token -> contact id
        self.conversations: dict[str, Conversation] = {}
        self.tokens: dict[str, tuple[str, int]] = {}      # token -> (contact id, exp)
        self.sockets: list[Socket] = []
        self.sessions: list[dict] = []                     # session request bodies
        self.frames: list[tuple[str, dict]] = []           # (socket id, frame) from widgets
        self.connections = 0                               # websocket upgrades accepted
        self.attempts = 0                                  # websocket requests (accepted or refused)
        self.gateway_up = True
        self.swallow_acks = 0                              # store the next n sends but close before acking
        self.max_chars = 8000                              # gateway.max_message_chars
        self.max_frame_bytes = 65536                       # gateway.max_frame_bytes
        self.rate_limit_sends = 0                          # drop the next n sends with an unref'd rate_limited
        self.revoked: set[str] = set()                     # contacts whose sockets close 4403 at authenticate
        self.idempotency: dict[tuple, tuple[str, dict]] = {}
        self.widget_gate: asyncio.Event | None = None      # set: widget.js is held until it is set
        self.session_error: tuple[int, str] | None = None
        self.pages: dict[str, str] = {}
        self._changed = asyncio.Event()
        self._clock = 0
        self._runners: list[web.AppRunner] = []

    # ---- servers --------------------------------------------------------------------------
    async def start(self) -> None:
        api = web.Application()
        api.router.add_get("/widget/{name}", self._widget_file)
        api.router.add_route("OPTIONS", "/v1/widget/session", self._preflight)
        api.router.add_post("/v1/widget/session", self._session)
        api.router.add_get("/gateway", self._gateway)
        shop = web.Application()
        shop.router.add_get("/{name}", self._page)
        for app, port in ((api, self.api_port), (shop, self.shop_port)):
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            self._runners.append(runner)

    async def close(self) -> None:
        for s in list(self.sockets):
            await s.ws.close(code=1001)
        for runner in self._runners:
            await runner.cleanup()

    def _touch(self) -> None:
        self._changed.set()

    async def wait_for(self, predicate, timeout: float = 10.0, what: str = "condition"):
        """Wait until predicate() is truthy (re-checked on every server event)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.2))
            except asyncio.TimeoutError:
                pass

    def now_ms(self) -> int:
        self._clock += 1
        return BASE_MS + self._clock * 60_000

    # ---- host pages -----------------------------------------------------------------------
    def page(self, name: str, *, config: str | None = None, head: str = "", body: str = "",
             loader: bool = True) -> str:
        """A shop page embedding the widget; returns its URL."""
        config = config if config is not None else f'{{app_id: "{APP_ID}"}}'
        snippet = f"<script>window.Convot = {config};</script>"
        if loader:
            snippet += f'<script async src="{self.api}/widget/loader.js"></script>'
        self.pages[name] = (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{name}</title>{head}</head>"
                            f"<body><h1>Shop</h1><p>Products.</p><a href='#x' id=host-link>Host link</a>{body}{snippet}</body></html>")
        return f"{self.shop}/{name}"

    async def _page(self, request: web.Request) -> web.Response:
        html = self.pages.get(request.match_info["name"])
        if html is None:
            raise web.HTTPNotFound()
        return web.Response(text=html, content_type="text/html")

    async def _widget_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ("loader.js", "widget.js"):
            raise web.HTTPNotFound()
        if name == "widget.js" and self.widget_gate is not None:
            await self.widget_gate.wait()
        return web.Response(body=(DIST / name).read_bytes(), content_type="text/javascript",
                            headers={"Cache-Control": "no-store"})

    # ---- widget session (docs/widget.md) --------------------------------------------------
    def _cors(self, request: web.Request) -> dict:
        origin = request.headers.get("Origin")
        if origin != self.shop:
            return {}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                "Access-Control-Allow-Methods": "POST", "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": "600"}

    async def _preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers=self._cors(request))

    def _error(self, request, status: int, code: str, **headers) -> web.Response:
        return web.json_response({"error": {"code": code, "message": code.replace("_", " "), "details": {}}},
                                 status=status, headers={**self._cors(request), **headers})

    def make_token(self, contact_id: str, ttl: int | None = None) -> tuple[str, int]:
        now = int(time.time())
        exp = now + (ttl if ttl is not None else self.token_ttl)
        header = _b64(json.dumps({"alg": "EdDSA", "kid": "k1", "typ": "JWT"}).encode())
        claims = _b64(json.dumps({"sub": contact_id, "cid": contact_id, "role": "shopper", "iat": now, "nbf": now,
                                  "exp": exp, "jti": uuid.uuid4().hex}).encode())
        token = f"{header}.{claims}.{_b64(secrets.token_bytes(64))}"
        self.tokens[token] = (contact_id, exp)
        return token, exp

    async def _session(self, request: web.Request) -> web.Response:
        cors = self._cors(request)
        if not cors:
            return self._error(request, 403, "forbidden")
        try:
            body = await request.json()
        except ValueError:
            return self._error(request, 400, "bad_request")
        self.sessions.append(body)
        self._touch()
        if self.session_error:
            status, code = self.session_error
            return self._error(request, status, code)
        if body.get("app_id") != APP_ID:
            return self._error(request, 404, "not_found")
        ident = body.get("identify") or {}
        key = ident.get("external_id") or ident.get("email")
        verified = bool(key and ident.get("user_hash")
                        and hmac.compare_digest(user_hash(key), str(ident["user_hash"])))
        if self.require_verification and key and not verified:
            return self._error(request, 403, "identity_verification_required")
        contact = None
        if ident.get("external_id"):
            contact = next((c for c in self.contacts.values() if c.external_id == ident["external_id"]), None)
        if contact is None and ident.get("email"):
            contact = next((c for c in self.contacts.values() if c.email == ident["email"]), None)
        visitor = body.get("visitor_token")
        if contact is None and visitor in self.visitors:
            contact = self.contacts[self.visitors[visitor]]
        if contact is None:
            contact = Contact(id=str(uuid.uuid4()))
            self.contacts[contact.id] = contact
        for name in ("external_id", "email", "name", "company", "phone", "avatar_url"):
            if ident.get(name) is not None and (verified or getattr(contact, name) is None):
                setattr(contact, name, ident[name])
        for k, v in (ident.get("custom_data") or {}).items():
            if v is None:
                contact.custom_data.pop(k, None)
            elif verified or k not in contact.custom_data:
                contact.custom_data[k] = v
        contact.verified = contact.verified or verified
        if visitor not in self.visitors or self.visitors[visitor] != contact.id:
            visitor = secrets.token_urlsafe(24)
            self.visitors[visitor] = contact.id
        token, exp = self.make_token(contact.id)
        convs = sorted((c for c in self.conversations.values() if c.contact_id == contact.id and not c.deleted),
                       key=lambda c: c.messages[-1]["created_at"] if c.messages else 0, reverse=True)
        return web.json_response({
            "token": token, "expires_at": exp, "visitor_token": visitor,
            "gateway_url": f"ws://127.0.0.1:{self.api_port}/gateway",
            "contact": {"id": contact.id, "name": contact.name, "email": contact.email,
                        "verified": contact.verified},
            "app": {"name": self.app_name, "settings": self.settings},
            "conversations": [{"id": c.id, "last_seq": len(c.messages), "status": c.status,
                               "read_seq": c.shopper_read} for c in convs],
            "team": {"online": self.team_online,
                     "agents": [{"id": k, "name": v["name"], "avatar_url": v["avatar_url"]} for k, v in AGENTS.items()]},
        }, headers=cors)

    # ---- gateway (docs/protocol.md) -------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        self._touch()
        if not self.gateway_up:
            raise web.HTTPServiceUnavailable()
        ws = web.WebSocketResponse(max_msg_size=65536)
        await ws.prepare(request)
        sock = Socket(ws, uuid.uuid4().hex)
        self.connections += 1
        self.sockets.append(sock)
        self._touch()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    frame = json.loads(msg.data)
                except ValueError:
                    await self._send(sock, {"type": "error", "code": "bad_json", "message": "", "ref": None})
                    continue
                self.frames.append((sock.id, frame))
                self._touch()
                await self._dispatch(sock, frame)
        finally:
            if sock.expiry:
                sock.expiry.cancel()
            self.sockets.remove(sock)
            self._touch()
        return ws

    async def _send(self, sock: Socket, frame: dict) -> None:
        if not sock.ws.closed:
            await sock.ws.send_str(json.dumps(frame))

    async def _dispatch(self, sock: Socket, f: dict) -> None:
        kind, ref = f.get("type"), f.get("ref")
        if sock.contact_id is None:
            if kind != "authenticate":
                await sock.ws.close(code=4400, message=b"protocol_violation")
                return
            found = self.tokens.get(f.get("token"))
            if found is None:
                await sock.ws.close(code=4401, message=b"auth_failed:bad_signature")
                return
            if found[1] <= time.time():
                await sock.ws.close(code=4401, message=b"auth_failed:expired")
                return
            if found[0] in self.revoked:
                await sock.ws.close(code=4403, message=b"access_revoked")
                return
            sock.contact_id, sock.token = found
            sock.token = f["token"]
            self._expire_at(sock, found[1])
            await self._send(sock, {"type": "ready", "ref": ref, "connection_id": sock.id, "org_id": "org",
                                    "role": "shopper", "subject": sock.contact_id, "expires_at": found[1],
                                    "server_time": int(time.time() * 1000),
                                    "limits": {"max_message_chars": self.max_chars, "max_frame_bytes": self.max_frame_bytes}})
            return
        handler = getattr(self, "_on_" + str(kind).replace(".", "_"), None)
        if handler is None:
            await self._send(sock, {"type": "error", "code": "unknown_type", "message": "", "ref": ref})
            return
        await handler(sock, f, ref)

    def _expire_at(self, sock: Socket, exp: int) -> None:
        if sock.expiry:
            sock.expiry.cancel()
        loop = asyncio.get_running_loop()
        sock.expiry = loop.call_later(max(0.0, exp - time.time()),
                                      lambda: loop.create_task(sock.ws.close(code=4003, message=b"token_expired")))

    async def _on_send(self, sock, f, ref):
        if self.rate_limit_sends:
            # The gateway's token bucket answers before parsing: the error names no frame.
            self.rate_limit_sends -= 1
            await self._send(sock, {"type": "error", "code": "rate_limited", "message": "", "ref": None})
            return
        cmid, body, conv_id = f.get("client_msg_id"), f.get("body"), f.get("conversation_id")
        if not isinstance(body, str) or not body.strip() or not isinstance(cmid, str):
            await self._send(sock, {"type": "error", "code": "bad_frame", "message": "", "ref": ref})
            return
        if len(body) > self.max_chars:
            await self._send(sock, {"type": "error", "code": "message_too_long", "message": "", "ref": ref})
            return
        # Idempotency keys as in engine/lua/append.lua: a send that starts a conversation is
        # deduplicated per (contact, client_msg_id), a send into one per (conversation, id).
        if conv_id is None:
            key = ("new", sock.contact_id, cmid)
            conv = self.conversations.get(self.idempotency.get(key, (None,))[0])
            if conv is None:
                conv = Conversation(str(uuid.uuid4()), sock.contact_id)
                self.conversations[conv.id] = conv
        else:
            key = ("conv", conv_id, cmid)
            conv = self.conversations.get(conv_id)
            if conv is None or conv.contact_id != sock.contact_id or conv.deleted:
                await self._send(sock, {"type": "error", "code": "not_found", "message": "", "ref": ref})
                return
        duplicate = key in self.idempotency
        if duplicate:
            message = self.idempotency[key][1]
        else:
            message = self._append(conv, body, "incoming", "contact", sock.contact_id, cmid)
            self.idempotency[key] = (conv.id, message)
        if self.swallow_acks and not duplicate:
            # Durable, then the gateway dies before fan-out and ack.
            self.swallow_acks -= 1
            await sock.ws.close(code=4002, message=b"server_error")
            return
        if not duplicate:
            await self._fanout(conv, message)
        await self._send(sock, {"type": "ack", "ref": ref, "conversation_id": conv.id, "id": message["id"],
                                "seq": message["seq"], "client_msg_id": cmid, "created_at": message["created_at"],
                                "duplicate": duplicate})

    def _append(self, conv: Conversation, body: str, type_: str, author_kind: str, author_id, cmid=None) -> dict:
        message = {"conversation_id": conv.id, "seq": len(conv.messages) + 1, "id": secrets.token_hex(12),
                   "client_msg_id": cmid, "type": type_, "author_kind": author_kind, "author_id": author_id,
                   "body": body, "meta": {}, "deleted": False, "created_at": self.now_ms()}
        conv.messages.append(message)
        if cmid:
            conv.by_cid[cmid] = message
        if type_ == "incoming" and conv.status != "open":
            conv.status = "open"
        self._touch()
        return message

    def _shopper_sockets(self, conv: Conversation):
        return [s for s in self.sockets if s.contact_id == conv.contact_id and not s.ws.closed]

    async def _fanout(self, conv: Conversation, message: dict) -> None:
        if message["type"] == "note":
            return
        for s in self._shopper_sockets(conv):
            await self._send(s, {"type": "message", "message": message})

    async def _on_typing(self, sock, f, ref):
        pass  # recorded in self.frames: the agents' side is the test

    async def _on_read(self, sock, f, ref):
        conv = self.conversations.get(f.get("conversation_id"))
        if conv and conv.contact_id == sock.contact_id:
            conv.shopper_read = max(conv.shopper_read, int(f.get("seq", 0)))

    async def _on_resume(self, sock, f, ref):
        done, missing = {}, []
        for conv_id, after in (f.get("conversations") or {}).items():
            conv = self.conversations.get(conv_id)
            if conv is None or conv.contact_id != sock.contact_id or conv.deleted:
                missing.append(conv_id)
                continue
            for m in conv.messages[after:]:
                if m["type"] != "note":
                    await self._send(sock, {"type": "message", "message": m})
            done[conv_id] = len(conv.messages)
        await self._send(sock, {"type": "resumed", "ref": ref, "conversations": done, "incomplete": [],
                                "not_found": missing})

    async def _on_history(self, sock, f, ref):
        conv = self.conversations.get(f.get("conversation_id"))
        if conv is None or conv.contact_id != sock.contact_id:
            await self._send(sock, {"type": "error", "code": "not_found", "message": "", "ref": ref})
            return
        before = f.get("before_seq") or len(conv.messages) + 1
        limit = int(f.get("limit") or 50)
        visible = [m for m in conv.messages[:before - 1] if m["type"] != "note"]
        page = visible[-limit:]
        await self._send(sock, {"type": "history", "ref": ref, "conversation_id": conv.id,
                                "more": len(visible) > len(page), "messages": page})

    async def _on_token_refresh(self, sock, f, ref):
        found = self.tokens.get(f.get("token"))
        if found is None or found[0] != sock.contact_id or found[1] <= time.time():
            await self._send(sock, {"type": "error", "code": "token_mismatch", "message": "", "ref": ref})
            return
        sock.token = f["token"]
        self._expire_at(sock, found[1])
        await self._send(sock, {"type": "token.refreshed", "ref": ref, "expires_at": found[1]})

    async def _on_ping(self, sock, f, ref):
        await self._send(sock, {"type": "pong", "ref": ref, "server_time": int(time.time() * 1000)})

    # ---- the agents' side, driven by tests ------------------------------------------------
    def conversation_of(self, contact_id: str | None = None) -> Conversation | None:
        convs = [c for c in self.conversations.values() if contact_id is None or c.contact_id == contact_id]
        return convs[-1] if convs else None

    def start_conversation(self, contact_id: str) -> Conversation:
        conv = Conversation(str(uuid.uuid4()), contact_id)
        self.conversations[conv.id] = conv
        return conv

    async def agent_message(self, conv: Conversation, body: str, agent: str = ALICE) -> dict:
        message = self._append(conv, body, "outgoing", "member", agent)
        await self._fanout(conv, message)
        return message

    async def fanout(self, conv: Conversation, message: dict) -> None:
        await self._fanout(conv, message)

    async def agent_note(self, conv: Conversation, body: str, agent: str = ALICE) -> dict:
        return self._append(conv, body, "note", "member", agent)

    async def agent_typing(self, conv: Conversation, active: bool = True, agent: str = ALICE) -> None:
        for s in self._shopper_sockets(conv):
            await self._send(s, {"type": "typing", "conversation_id": conv.id,
                                 "author": {"kind": "member", "id": agent}, "active": active})

    async def agent_read(self, conv: Conversation, seq: int, agent: str = ALICE) -> None:
        for s in self._shopper_sockets(conv):
            await self._send(s, {"type": "read", "conversation_id": conv.id,
                                 "reader": {"kind": "member", "id": agent}, "seq": seq})

    async def presence(self, agent: str, state: str, team: str | None = None) -> None:
        """A member's state, then (like engine/availability.py) the team's summary when given."""
        for s in list(self.sockets):
            if s.contact_id:
                await self._send(s, {"type": "presence", "subject": {"kind": "member", "id": agent}, "state": state})
                if team:
                    await self._send(s, {"type": "presence", "subject": {"kind": "team"}, "state": team})

    async def delete_message(self, conv: Conversation, seq: int, agent: str = ALICE) -> None:
        m = conv.messages[seq - 1]
        m.update(body="", deleted=True)
        for s in self._shopper_sockets(conv):
            await self._send(s, {"type": "conversation.update", "changes": ["message_deleted"],
                                 "actor": {"kind": "member", "id": agent}, "message": m,
                                 "conversation": {"id": conv.id, "status": conv.status, "seq": len(conv.messages),
                                                  "deleted": False}, "at": self.now_ms()})

    async def close_sockets(self, code: int, reason: str = "") -> None:
        for s in list(self.sockets):
            await s.ws.close(code=code, message=reason.encode())

    async def stop_gateway(self, code: int = 1012) -> None:
        """A gateway restart: every socket closed, new connections refused until start_gateway()."""
        self.gateway_up = False
        await self.close_sockets(code, "restart")

    def start_gateway(self) -> None:
        self.gateway_up = True

    def widget_frames(self, kind: str) -> list[dict]:
        return [f for _, f in self.frames if f.get("type") == kind]

    def messages(self, conv: Conversation | None = None) -> list[dict]:
        conv = conv or self.conversation_of()
        return conv.messages if conv else []
