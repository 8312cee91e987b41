"""The inbox end to end in real Chromium against the real services: a shopper on the demo shop
page and an agent in the inbox chat both ways, live."""

from __future__ import annotations

import pytest

from tests.inbox.support import (inbox_bubbles, open_conversation_of, open_demo_shop, save_screenshot, sign_in,
                                 widget_bubbles, widget_send)

pytestmark = pytest.mark.browser


async def test_shopper_and_agent_chat_both_ways_with_typing_receipts_and_unread(stack, browsers):
    shop_ctx, agent_ctx = await browsers.new(), await browsers.new()
    agent = await sign_in(agent_ctx, stack, stack.demo["agent"], stack.demo["agent_pw"])
    shop, widget = await open_demo_shop(shop_ctx, stack)

    await widget_send(widget, "Hello from the shop, my order is late")
    # The new conversation appears in the agent's list without a reload, unread.
    row = agent.locator(".conv", has_text="Hello from the shop")
    await row.wait_for()
    assert await row.locator(".unread-badge").inner_text() == "1"
    assert await agent.locator(".nav-badge").inner_text() == "1"
    assert (await agent.title()).startswith("(1) ")

    await open_conversation_of(agent, "Hello from the shop")
    assert await inbox_bubbles(agent) == ["Hello from the shop, my order is late"]
    # Opened: the unread count clears, and the shopper sees that the agent read it.
    await row.locator(".unread-badge").wait_for(state="hidden")
    assert await agent.locator(".nav-badge").is_hidden()
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
