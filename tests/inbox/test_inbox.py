"""The inbox end to end in real Chromium against the real services: a shopper on the demo shop
page and an agent in the inbox chat both ways, live."""

from __future__ import annotations

import asyncio
import signal
import uuid

import pytest

from tests.inbox.support import (inbox_bubbles, open_conversation_of, open_demo_shop, save_screenshot, sign_in,
                                 wait_connected, widget_bubbles, widget_send)

pytestmark = pytest.mark.browser


async def test_shopper_and_agent_chat_both_ways_with_typing_receipts_and_unread(stack, browsers):
    shop_ctx, agent_ctx = await browsers.new(), await browsers.new()
    agent = await sign_in(agent_ctx, stack, stack.demo["agent"], stack.demo["agent_pw"])
    name = f"Sam {uuid.uuid4().hex[:6]}"
    shop, widget = await open_demo_shop(shop_ctx, stack, name=name)

    await widget_send(widget, "Hello from the shop, my order is late")
    # The new conversation appears in the agent's list without a reload, unread.
    row = agent.locator(".conv", has_text=name)
    await row.locator(".unread-badge", has_text="1").wait_for()
    # (Other conversations of the organisation may be unread in this new browser too.)
    unread = int(await agent.inner_text(".nav-badge"))
    assert unread >= 1 and (await agent.title()).startswith(f"({unread}) ")
    assert "unread" in await row.locator(".conv-link").get_attribute("aria-label")

    await open_conversation_of(agent, name)
    assert await inbox_bubbles(agent) == ["Hello from the shop, my order is late"]
    # Opened: the unread count clears, and the shopper sees that the agent read it.
    await row.locator(".unread-badge").wait_for(state="hidden")
    await agent.wait_for_function("(n) => (document.querySelector('.nav-badge').hidden ? 0 : +document.querySelector('.nav-badge').textContent) === n",
                                  arg=unread - 1)
    assert not (await agent.title()).startswith(f"({unread}) ")
    await widget.wait_for_function("() => [...document.querySelectorAll('.msg.me .meta')].some(m => m.textContent.includes('Seen'))")

    # Typing shows on the other side, both ways.
    await agent.type("#composer-input", "Let me check")
    await widget.wait_for_function("() => document.querySelector('.typing').textContent.includes('is typing')")
    await widget.type("#cv-input", "thanks")
    await agent.wait_for_function("() => document.querySelector('.typing').textContent.includes('is typing')")
    await widget.fill("#cv-input", "")

    await agent.press("#composer-input", "Enter")
    await widget.wait_for_function("() => [...document.querySelectorAll('.msg .bubble')].some(b => b.textContent === 'Let me check')")
    assert await widget_bubbles(widget) == ["Hello from the shop, my order is late", "Let me check"]
    # The shopper has the panel open: the agent sees "Seen" under the reply.
    await agent.wait_for_selector(".msg-outgoing .msg-status.seen")

    # Panel closed: the widget's launcher counts unread team messages; opening clears it.
    await widget.click(".launcher")
    await widget.wait_for_selector(".panel", state="hidden")
    await agent.fill("#composer-input", "Your parcel left our warehouse today.")
    await agent.press("#composer-input", "Enter")
    await widget.wait_for_selector(".launcher .badge", state="visible")
    assert await widget.inner_text(".launcher .badge") == "1"
    await widget.click(".launcher")
    await widget.wait_for_selector(".launcher .badge", state="hidden")

    await widget_send(widget, "Great, thank you!")
    await agent.wait_for_function("() => [...document.querySelectorAll('.log .bubble')].some(b => b.textContent.includes('Great, thank you!'))")
    assert await inbox_bubbles(agent) == ["Hello from the shop, my order is late", "Let me check",
                                          "Your parcel left our warehouse today.", "Great, thank you!"]
    save_screenshot("inbox-conversation.png", await agent.screenshot())


async def test_gateway_restart_mid_conversation_loses_and_doubles_nothing(stack, browsers):
    shop_ctx, agent_ctx = await browsers.new(), await browsers.new()
    agent = await sign_in(agent_ctx, stack, stack.demo["agent"], stack.demo["agent_pw"])
    name = f"Rory {uuid.uuid4().hex[:6]}"
    shop, widget = await open_demo_shop(shop_ctx, stack, name=name)
    await widget_send(widget, "Restart test: first")
    await agent.locator(".conv", has_text=name).wait_for()
    await open_conversation_of(agent, name)
    await agent.fill("#composer-input", "Restart test: reply")
    await agent.press("#composer-input", "Enter")
    await widget.wait_for_function("() => [...document.querySelectorAll('.msg .bubble')].some(b => b.textContent === 'Restart test: reply')")

    # The gateway goes away (a crash: no drain, no close frame) and both sides type meanwhile.
    stack.stop("gateway", signal.SIGKILL)
    await agent.wait_for_selector("html:not([data-connection=ready])", state="attached")
    await agent.locator(".banner").wait_for()
    await widget_send(widget, "Restart test: typed offline by the shopper")
    await agent.fill("#composer-input", "Restart test: typed offline by the agent")
    await agent.press("#composer-input", "Enter")
    assert await agent.locator(".msg.pending").count() == 1

    stack.start("gateway")
    await stack.wait_ready("gateway")
    # Both reconnect by themselves and send what waited, once.
    await agent.wait_for_selector("html[data-connection=ready]", state="attached", timeout=40_000)
    await agent.wait_for_function("() => [...document.querySelectorAll('.log .bubble')].some(b => b.textContent.includes('typed offline by the shopper'))", timeout=40_000)
    await agent.locator(".msg.pending").wait_for(state="detached")
    await widget.wait_for_function("() => [...document.querySelectorAll('.msg .bubble')].some(b => b.textContent.includes('typed offline by the agent'))", timeout=40_000)

    expected = {"Restart test: first", "Restart test: reply", "Restart test: typed offline by the shopper",
                "Restart test: typed offline by the agent"}
    for texts in (await inbox_bubbles(agent), await widget_bubbles(widget)):
        assert sorted(texts) == sorted(expected), texts
    # What the server stored is the same: reloading both sides shows each message exactly once.
    await agent.reload()
    await wait_connected(agent)
    await agent.wait_for_function("() => document.querySelectorAll('.log .msg').length >= 4")
    await shop.reload()
    handle = await shop.wait_for_selector("iframe[data-convot]", state="attached")
    widget = await handle.content_frame()
    await widget.wait_for_function("() => document.querySelectorAll('.msg .bubble').length >= 4")
    for texts in (await inbox_bubbles(agent), await widget_bubbles(widget)):
        assert sorted(texts) == sorted(expected), texts


async def test_a_message_with_html_is_shown_as_text_on_both_sides_and_runs_nothing(stack, browsers):
    shop_ctx, agent_ctx = await browsers.new(), await browsers.new()
    agent = await sign_in(agent_ctx, stack, stack.demo["agent"], stack.demo["agent_pw"])
    name = f"Hal {uuid.uuid4().hex[:6]}"
    shop, widget = await open_demo_shop(shop_ctx, stack, name=name)
    hostile = "<img src=x onerror=alert(1)>"
    await widget_send(widget, hostile)
    await agent.locator(".conv", has_text=name).wait_for()
    await open_conversation_of(agent, name)
    await agent.fill("#composer-input", '<script>alert("agent")</script><b onmouseover=alert(2)>bold</b>')
    await agent.press("#composer-input", "Enter")
    await widget.wait_for_function("() => document.querySelectorAll('.msg .bubble').length >= 2")
    await agent.wait_for_selector(".msg-outgoing:not(.pending)")

    assert await inbox_bubbles(agent) == [hostile, '<script>alert("agent")</script><b onmouseover=alert(2)>bold</b>']
    assert await widget_bubbles(widget) == [hostile, '<script>alert("agent")</script><b onmouseover=alert(2)>bold</b>']
    for frame in (agent.main_frame, widget):
        assert await frame.locator(".log img, .log script, .log b").count() == 0
    # The list's preview is text too; hovering where the markup would be runs nothing.
    assert await agent.locator(".conv", has_text=name).locator(".conv-preview").inner_text() == \
        'You: <script>alert("agent")</script><b onmouseover=alert(2)>bold</b>'

    await agent.hover(".msg-outgoing .bubble")
    assert browsers.dialogs == []


async def test_the_inbox_refreshes_its_token_in_band_without_dropping_the_socket(stack, browsers):
    ctx = await browsers.new()
    sockets: list[str] = []
    refreshed = asyncio.Event()

    def watch(ws):
        sockets.append(ws.url)
        ws.on("framereceived", lambda payload: refreshed.set() if '"token.refreshed"' in str(payload) else None)

    ctx.on("page", lambda page: page.on("websocket", watch))
    agent = await sign_in(ctx, stack, stack.demo["agent"], stack.demo["agent_pw"])
    # Member tokens live 30 s in these tests (auth.agent_token_ttl): the new one comes in-band.
    await asyncio.wait_for(refreshed.wait(), 40)
    assert len(sockets) == 1
    assert await agent.get_attribute("html", "data-connection") == "ready"
    # The socket still works with the new token.
    name = f"Tim {uuid.uuid4().hex[:6]}"
    shop, widget = await open_demo_shop(await browsers.new(), stack, name=name)
    await widget_send(widget, "after the refresh")
    await agent.locator(".conv", has_text=name).wait_for()
    assert len(sockets) == 1


async def test_the_inbox_works_from_the_keyboard_with_labelled_regions(stack, browsers):
    agent_ctx, shop_ctx = await browsers.new(), await browsers.new()
    agent = await sign_in(agent_ctx, stack, stack.demo["agent"], stack.demo["agent_pw"])
    name = f"Kay {uuid.uuid4().hex[:6]}"
    shop, widget = await open_demo_shop(shop_ctx, stack, name=name)
    await widget_send(widget, "keyboard question")
    row = agent.locator(".conv-link", has_text=name)
    await row.wait_for()
    label = await row.get_attribute("aria-label")
    assert label.startswith(f"{name}, 1 unread, Open, unassigned")

    # Tab reaches the row; Enter opens the conversation and puts the caret in the composer.
    await row.focus()
    await agent.keyboard.press("Enter")
    await agent.wait_for_selector(".thread .log .msg")
    await agent.wait_for_function("() => document.activeElement && document.activeElement.id === 'composer-input'")
    assert await row.get_attribute("aria-current") == "page"
    log = agent.locator(".log")
    assert await log.get_attribute("role") == "log" and await log.get_attribute("aria-live") == "polite"
    assert await agent.locator(".log .msg .bubble .visually-hidden").first.text_content() == f"{name}: "
    await agent.keyboard.type("first line")
    await agent.keyboard.press("Shift+Enter")
    await agent.keyboard.type("second line")
    await agent.keyboard.press("Enter")
    await widget.wait_for_function("() => [...document.querySelectorAll('.msg .bubble')].some(b => b.textContent === 'first line\\nsecond line')")

    # Reply/Note tabs with the arrow keys.
    await agent.get_by_role("tab", name="Reply").focus()
    await agent.keyboard.press("ArrowRight")
    assert await agent.get_by_role("tab", name="Note").get_attribute("aria-selected") == "true"
    assert await agent.evaluate("() => document.activeElement.textContent") == "Note"

    # A dialog takes the focus, Escape closes it and gives the focus back.
    delete = agent.get_by_role("button", name="Delete message from You")
    await delete.focus()
    await agent.keyboard.press("Enter")
    dialog = agent.get_by_role("dialog", name="Delete this message?")
    await dialog.wait_for()
    assert await agent.evaluate("() => document.activeElement.closest('dialog') !== null")
    await agent.keyboard.press("Escape")
    await dialog.wait_for(state="detached")
    await agent.wait_for_function(
        "() => document.activeElement && document.activeElement.getAttribute('aria-label') === 'Delete message from You'")
    assert "first line" in "".join(await inbox_bubbles(agent))       # nothing was deleted
    for landmark in ("navigation", "main"):
        assert await agent.get_by_role(landmark).count() >= 1
    assert await agent.get_by_role("complementary", name="Contact details").count() == 1
