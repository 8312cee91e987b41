"""The widget against the real services (admin API, gateway, engine worker as processes, the
session's PostgreSQL and Redis): the demo shop page under its strict CSP, the widget-session
contract, the socket protocol, a gateway restart, identity verification, in-band token refresh.

The agents' side is a websocket of the agent of `convot demo`, speaking docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import tempfile
import uuid
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from convot.crypto import Encryptor, row_aad
from convot.db import scoped
from convot.embedded import free_port
from convot.tokens import TokenIssuer
from tests.inbox.conftest import Stack
from tests.widget_js.support import bubbles, open_panel, send, widget_frame


@pytest.fixture(scope="module")
async def stack(servers):
    from convot.demo import create_demo

    data = Path(tempfile.mkdtemp(prefix="convot-widget-"))
    api_port, gateway_port = free_port(), free_port()
    cfg = servers.config(
        data={"dir": str(data)},
        gateway={"port": gateway_port, "metrics_port": free_port(), "drain_seconds": 2.0},
        engine={"metrics_port": free_port()},
        smtp={"port": free_port()},
        auth={"widget_token_ttl": 30},          # the shortest allowed: a refresh within the test
        admin_api={"port": api_port, "public_url": f"http://127.0.0.1:{api_port}",
                   "gateway_public_url": f"ws://127.0.0.1:{gateway_port}", "development": True},
        log={"format": "json", "level": "info"})
    s = Stack(cfg, servers.env(cfg), data)
    s.demo = await create_demo(cfg)
    try:
        for name in ("engine", "gateway", "admin-api"):
            s.start(name)
        for name in ("engine", "gateway", "admin-api"):
            await s.wait_ready(name)
        yield s
    finally:
        for name in list(s.procs):
            s.stop(name)


class AgentSocket:
    """The demo agent's inbox socket, frames collected as they come."""

    def __init__(self, ws, reader):
        self.ws, self.reader, self.frames = ws, reader, []
        self.changed = asyncio.Event()

    @classmethod
    async def open(cls, stack, db) -> "AgentSocket":
        org = stack.demo["org_id"]
        async with scoped(db, org_id=org) as conn:
            row = await conn.fetchrow("SELECT m.user_id, m.role, m.token_version FROM members m JOIN users u "
                                      "ON u.id = m.user_id WHERE m.org_id = $1 AND u.email = $2", org, stack.demo["agent"])
        token, _ = TokenIssuer(stack.config).member_token(org, row["user_id"], row["role"], row["token_version"])
        ws = await connect(f"ws://127.0.0.1:{stack.config.gateway.port}/")
        await ws.send(json.dumps({"type": "authenticate", "token": token, "ref": "auth"}))
        self = cls(ws, None)
        self.user_id = str(row["user_id"])
        self.reader = asyncio.get_running_loop().create_task(self._read())
        await self.wait(lambda f: f["type"] == "ready")
        return self

    async def _read(self):
        async for raw in self.ws:
            self.frames.append(json.loads(raw))
            self.changed.set()

    async def wait(self, predicate, timeout: float = 15.0):
        async def find():
            while True:
                for f in self.frames:
                    if predicate(f):
                        return f
                self.changed.clear()
                await self.changed.wait()
        return await asyncio.wait_for(find(), timeout)

    async def send(self, frame: dict) -> None:
        await self.ws.send(json.dumps(frame))

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)


@pytest.fixture
async def agent_socket(stack, db):
    opened = []

    async def open_():
        sock = await AgentSocket.open(stack, db)
        opened.append(sock)
        return sock

    yield open_
    for sock in opened:
        await sock.close()


async def _demo_shop(context, stack, sent: list | None = None):
    """The demo shop with the widget up; ``sent`` collects the frames the widget sends."""
    page = await context.new_page()
    if sent is not None:
        page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(json.loads(payload))))
    await page.goto(stack.api + "/demo")
    frame = await widget_frame(page)
    await frame.wait_for_function("document.querySelector('.presence').textContent !== ''")
    return page, frame


async def test_conversation_and_gateway_restart_against_the_real_services(context, stack, agent_socket):
    sent = []
    page, frame = await _demo_shop(context, stack, sent)
    agent = await agent_socket()
    await open_panel(frame)
    first = f"Hello from the widget {uuid.uuid4().hex[:6]}"
    await send(frame, first)
    event = await agent.wait(lambda f: f["type"] == "message" and f["message"]["body"] == first)
    conv = event["message"]["conversation_id"]
    assert event["message"]["type"] == "incoming" and event["message"]["seq"] == 1

    # Both ways, hostile text from the team, typing and read receipts both ways.
    await agent.send({"type": "typing", "conversation_id": conv, "active": True})
    await frame.wait_for_selector(".typing:has-text('is typing')")
    hostile = "<img src=x onerror=alert(1)> hi"
    await agent.send({"type": "send", "conversation_id": conv, "client_msg_id": "a-1", "body": hostile, "ref": "a-1"})
    await frame.wait_for_selector(".them .bubble:has-text('onerror')")
    assert await frame.evaluate("document.querySelectorAll('.log img').length") == 0
    await agent.wait(lambda f: f["type"] == "read" and f["reader"]["kind"] == "contact" and f["seq"] == 2)
    await agent.send({"type": "read", "conversation_id": conv, "seq": 1})
    await frame.wait_for_selector(".me .meta:has-text('Seen')")
    # A private note takes seq 3: the shopper never sees it, and the hole is not a loss.
    note = "internal: VIP, refund approved"
    await agent.send({"type": "send", "conversation_id": conv, "client_msg_id": "a-n", "body": note,
                      "kind": "note", "ref": "a-n"})
    await agent.wait(lambda f: f["type"] == "ack" and f["ref"] == "a-n")
    await frame.type("#cv-input", "typing", delay=10)
    await agent.wait(lambda f: f["type"] == "typing" and f["author"]["kind"] == "contact" and f["active"])
    await frame.fill("#cv-input", "")

    # A deploy: the gateway goes away; the shopper types meanwhile; it comes back.
    stack.stop("gateway")
    await frame.wait_for_selector(".banner:has-text('Reconnecting')")
    offline = "typed while the gateway was down"
    await send(frame, offline)
    await frame.wait_for_selector(".me .meta:has-text('Sending')")
    stack.start("gateway")
    await stack.wait_ready("gateway")
    await frame.wait_for_selector(".banner", state="hidden", timeout=30_000)
    await frame.wait_for_function("!document.querySelector('.log').textContent.includes('Sending')")
    agent2 = await agent_socket()
    await agent2.send({"type": "send", "conversation_id": conv, "client_msg_id": "a-2", "body": "after", "ref": "a-2"})
    await frame.wait_for_selector(".them .bubble:has-text('after')")
    await agent2.send({"type": "history", "conversation_id": conv, "limit": 50, "ref": "h"})
    history = await agent2.wait(lambda f: f["type"] == "history" and f["ref"] == "h")
    bodies = [m["body"] for m in history["messages"]]
    assert bodies == [first, hostile, note, offline, "after"]      # once each, in order
    assert [m["seq"] for m in history["messages"]] == [1, 2, 3, 4, 5]
    assert await bubbles(frame) == [first, hostile, offline, "after"]
    # One resume, after the restart, from the highest seq the shopper received (2: the note's
    # seq 3 never reaches it, and that hole is not treated as a loss).
    assert [f["conversations"] for f in sent if f["type"] == "resume"] == [{conv: 2}]


@pytest.fixture
async def other_browser(browser):
    """Another shopper's browser (own storage)."""
    ctx = await browser.new_context()
    yield ctx
    await ctx.close()


async def test_identity_verification_with_the_real_session_endpoint(context, other_browser, stack, db):
    org = stack.demo["org_id"]
    async with scoped(db, org_id=org) as conn:
        app = await conn.fetchrow("SELECT id, identity_secret_enc FROM apps WHERE public_key = $1", stack.demo["app_id"])
    secret = Encryptor.from_config(stack.config).decrypt(
        app["identity_secret_enc"], row_aad("apps", "identity_secret_enc", org, app["id"])).decode()
    good, forged = f"good-{uuid.uuid4().hex[:8]}", f"forged-{uuid.uuid4().hex[:8]}"
    digest = hmac.new(secret.encode(), good.encode(), hashlib.sha256).hexdigest()   # as docs/widget.md shows

    page, frame = await _demo_shop(context, stack)
    await page.evaluate("([id, h]) => Convot.identify({external_id: id, name: 'Verified Vera', user_hash: h})",
                        [good, digest])
    page2, frame2 = await _demo_shop(other_browser, stack)
    await page2.evaluate("id => Convot.identify({external_id: id, name: 'Forged Fred', user_hash: '00'.repeat(32)})",
                         forged)

    async def contact(external_id):
        async with scoped(db, org_id=org) as conn:
            return await conn.fetchrow("SELECT name, verified FROM contacts WHERE org_id = $1 AND external_id = $2",
                                       org, external_id)

    for _ in range(300):
        vera = await contact(good)
        if vera is not None and vera["verified"]:
            break
        await asyncio.sleep(0.1)
    assert vera is not None and vera["verified"] is True and vera["name"] == "Verified Vera"
    await asyncio.sleep(0.5)
    fred = await contact(forged)
    assert fred is None or fred["verified"] is False
    # Both widgets still work.
    for f in (frame, frame2):
        await f.wait_for_selector(".banner", state="hidden")


async def test_token_refresh_in_band_with_the_real_gateway(context, stack):
    page = await context.new_page()
    sockets, received = [], []
    page.on("websocket", lambda ws: (sockets.append(ws), ws.on("framereceived", lambda p: received.append(p))))
    await page.goto(stack.api + "/demo")
    await widget_frame(page)
    # Tokens live 30 s here; the widget refreshes at 15 s over the same socket.
    for _ in range(250):
        if any('"token.refreshed"' in str(p) for p in received):
            break
        await asyncio.sleep(0.1)
    assert any('"token.refreshed"' in str(p) for p in received), received[-5:]
    assert len(sockets) == 1 and not sockets[0].is_closed()
