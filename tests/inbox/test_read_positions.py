"""Unread state follows a member across browsers: the read position is stored by the server
(gateway `read` frames -> read_positions -> `read_seq` of the conversation list) and another
open inbox of the same member follows live. Real Chromium against the real services."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.inbox.support import add_member, open_conversation_of, open_demo_shop, sign_in, wait_connected, widget_send

pytestmark = pytest.mark.browser


async def _scoped_fetchval(owner_db, org: str, sql: str, *args):
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", org)
        return await owner_db.fetchval(sql, *args)


async def _until(probe, what: str, timeout: float = 15.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await probe():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_a_conversation_read_in_one_browser_is_read_in_another(stack, browsers, owner_db):
    org = stack.demo["org_id"]
    user_id, email, password = await add_member(stack, owner_db, role="agent", name="Rita Reader")
    name = f"Nell {uuid.uuid4().hex[:6]}"
    _shop, widget = await open_demo_shop(await browsers.new(), stack, name=name)
    await widget_send(widget, "Where is my parcel?")

    first = await sign_in(await browsers.new(), stack, email, password)
    row = first.locator(".conv", has_text=name)
    await row.locator(".unread-badge", has_text="1").wait_for()
    conv = (await row.locator(".conv-link").get_attribute("href")).rstrip("/").rsplit("/", 1)[1]
    # The engine workers have written the conversation (a read of one PostgreSQL does not have
    # yet is not stored: docs/protocol.md "Read positions").
    await _until(lambda: _scoped_fetchval(owner_db, org, "SELECT last_seq >= 1 FROM conversations WHERE id = $1",
                                          uuid.UUID(conv)), "the conversation to be persisted")
    await open_conversation_of(first, name)
    await row.locator(".unread-badge").wait_for(state="hidden")

    async def stored_seq():
        return await _scoped_fetchval(owner_db, org, "SELECT seq FROM read_positions WHERE user_id = $1 AND conversation_id = $2",
                                      uuid.UUID(user_id), uuid.UUID(conv))
    await _until(lambda: _is(stored_seq(), 1), "the read position to be stored")

    # A fresh browser of the same member (no local read positions): read, not unread -- once
    # the row's preview (the shopper's message, which alone would count as unread) is in.
    second = await sign_in(await browsers.new(), stack, email, password)
    for attempt in ("fresh", "reloaded"):
        row2 = second.locator(".conv", has_text=name)
        await row2.filter(has_text="Where is my parcel?").wait_for()
        assert await row2.locator(".unread-badge").is_hidden(), attempt
        assert "unread" not in (await row2.locator(".conv-link").get_attribute("aria-label")), attempt
        if attempt == "fresh":
            await second.reload()
            await wait_connected(second)

    # Live: a new message is unread in the second browser until the first one (which has the
    # conversation open) reads it.
    await widget_send(widget, "Any news?")
    await _until(lambda: _is(stored_seq(), 2), "the first browser's read of the new message")
    await second.locator(".conv", has_text=name).filter(has_text="Any news?").wait_for()
    await second.locator(".conv", has_text=name).locator(".unread-badge").wait_for(state="hidden")
    assert browsers.errors == []


async def _is(awaitable, expected) -> bool:
    return await awaitable == expected
