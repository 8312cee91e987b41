"""Working a conversation in the inbox: views and filters that follow live changes, assign,
Mark Pending, Resolve, Reopen, tags, private notes with @mentions, deleting messages by the
role rules, availability; each seen live by the other agent and, where it is theirs to see,
by the shopper."""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.inbox.support import (add_member, inbox_bubbles, open_conversation_of, open_demo_shop, save_screenshot,
                                 sign_in, widget_bubbles, widget_send)

pytestmark = pytest.mark.browser


# Desktop notifications and sounds as the page makes them (injected before the page's scripts).
RECORD_NOTIFICATIONS = """
window.__notifications = [];
window.__chimes = 0;
const Native = window.Notification;
window.Notification = class extends Native {
  constructor(title, options) { super(title, options); window.__notifications.push([title, (options || {}).body]); }
};
const createOscillator = AudioContext.prototype.createOscillator;
AudioContext.prototype.createOscillator = function () { window.__chimes++; return createOscillator.call(this); };
"""


async def conversation_row(page, text):
    row = page.locator(".conv", has_text=text)
    await row.wait_for()
    return row


async def shopper_starts_chat(shop_ctx, stack, agent_page, name: str, text: str):
    """A shopper called ``name`` writes ``text`` in the demo shop; ``agent_page`` opens that
    conversation once it is listed.  Returns the shop page and the widget frame."""
    shop, widget = await open_demo_shop(shop_ctx, stack, name=name)
    await widget_send(widget, text)
    await conversation_row(agent_page, name)
    await open_conversation_of(agent_page, name)
    return shop, widget


async def test_assign_status_tags_and_views_follow_live_on_both_inboxes(stack, browsers, owner_db):
    tag = uuid.uuid4().hex[:6]
    bea_id, email, password = await add_member(stack, owner_db, role="agent", name=f"Bea {tag}")
    shop_ctx, a_ctx, b_ctx = await browsers.new(), await browsers.new(), await browsers.new()
    alice = await sign_in(a_ctx, stack, stack.demo["agent"], stack.demo["agent_pw"])
    bea = await sign_in(b_ctx, stack, email, password, path="/app/inbox/unassigned")
    shop, widget = await open_demo_shop(shop_ctx, stack, name=f"Wanda {tag}")
    await widget_send(widget, f"Workflow {tag}")

    # Bea watches Unassigned; Alice takes the conversation: it leaves Bea's view at once.
    await conversation_row(bea, f"Wanda {tag}")
    await conversation_row(alice, f"Wanda {tag}")
    await open_conversation_of(alice, f"Wanda {tag}")
    await alice.get_by_role("button", name="Assign to me").click()
    await bea.locator(".conv", has_text=f"Wanda {tag}").wait_for(state="detached")
    await bea.click(".view-link[data-view=all]")
    await bea.select_option(".filters select[aria-label=Status]", "all")
    row = await conversation_row(bea, f"Wanda {tag}")
    assert await row.locator(".conv-assignee").inner_text() == "AA"
    await alice.click(".view-link[data-view=mine]")
    await conversation_row(alice, f"Wanda {tag}")
    await open_conversation_of(alice, f"Wanda {tag}")

    # Pending, then Resolved: the status pill and the status filter follow on Bea's side.
    await alice.get_by_role("button", name="Mark pending").click()
    await row.locator(".pill", has_text="Pending").wait_for()
    assert await alice.inner_text(".thread-head .pill") == "Pending"
    await bea.select_option(".filters select[aria-label=Status]", "resolved")
    await alice.get_by_role("button", name="Resolve").click()
    await conversation_row(bea, f"Wanda {tag}")
    await alice.get_by_role("button", name="Reopen").wait_for()
    # A shopper's message reopens it (the engine's rule): it leaves Bea's "Resolved" filter.
    await widget_send(widget, "One more thing")
    await bea.locator(".conv", has_text=f"Wanda {tag}").wait_for(state="detached")
    await alice.locator(".thread-head .pill", has_text="Open").wait_for()

    # Tags: typed names are normalised; the tag filter of the other inbox shows it.
    await alice.fill(".tag-input", f"VIP {tag}")
    await alice.press(".tag-input", "Enter")
    await alice.locator(".tag-list .tag-chip", has_text=f"#vip-{tag}").wait_for()
    await bea.select_option(".filters select[aria-label=Status]", "all")
    await (await conversation_row(bea, f"Wanda {tag}")).locator(".tag-chip", has_text=f"#vip-{tag}").wait_for()
    await alice.get_by_role("button", name=f"Remove tag vip-{tag}").click()
    await alice.locator(".tag-list .tag-chip").wait_for(state="detached")

    # Reassign to Bea from the assignee menu: it appears in Bea's Mine.
    await bea.click(".view-link[data-view=mine]")
    await alice.select_option(".thread-actions select[aria-label=Assignee]", bea_id)
    await conversation_row(bea, f"Wanda {tag}")
    assert await alice.input_value(".thread-actions select[aria-label=Assignee]") == bea_id


async def test_notes_stay_private_mentions_notify_and_deletion_follows_the_role_rules(stack, browsers, owner_db):
    tag = uuid.uuid4().hex[:6]
    _, email, password = await add_member(stack, owner_db, role="agent", name=f"Mia {tag}")
    shop_ctx, a_ctx, m_ctx, o_ctx = (await browsers.new(), await browsers.new(),
                                     await browsers.new(permissions=["notifications"]), await browsers.new())
    await m_ctx.add_init_script(RECORD_NOTIFICATIONS)
    alice = await sign_in(a_ctx, stack, stack.demo["agent"], stack.demo["agent_pw"])
    mia = await sign_in(m_ctx, stack, email, password, path="/app/settings/notifications")
    await mia.get_by_label("Desktop notifications").check()
    await mia.get_by_text("Desktop notifications are on.").wait_for()
    await mia.get_by_role("link", name="Inbox").click()
    owner = await sign_in(o_ctx, stack, stack.demo["owner"], stack.demo["owner_pw"])
    shop, widget = await shopper_starts_chat(shop_ctx, stack, alice, f"Nora {tag}", f"Notes {tag}")

    # A private note with an @mention picked from the list.
    await alice.get_by_role("tab", name="Note").click()
    await alice.type("#composer-input", f"Can you check this @Mi")
    await alice.locator("#mention-list [role=option]", has_text=f"Mia {tag}").wait_for()
    await alice.keyboard.press("Enter")
    assert await alice.input_value("#composer-input") == f"Can you check this @Mia {tag} "
    await alice.type("#composer-input", "please")
    await alice.keyboard.press("Enter")
    await alice.locator(".msg-note:not(.pending) .mention", has_text=f"@Mia {tag}").wait_for()

    # Mia is told (a desktop notification and the sound; the note is flagged for her); the
    # shopper never sees the note.
    await mia.wait_for_function("() => window.__notifications.length >= 1")
    title, body = (await mia.evaluate("() => window.__notifications"))[-1]
    assert title == "Adam Agent mentioned you" and body == f"Can you check this @Mia {tag} please"
    assert await mia.evaluate("() => window.__chimes") >= 1
    await conversation_row(mia, f"Nora {tag}")
    await open_conversation_of(mia, f"Nora {tag}")
    await mia.locator(".msg-note .mention-flag", has_text="Mentions you").wait_for()
    assert await widget_bubbles(widget) == [f"Notes {tag}"]

    # Alice replies; she may delete her own reply but not the shopper's message.
    await alice.get_by_role("tab", name="Reply").click()
    await alice.fill("#composer-input", "A reply to take back")
    await alice.press("#composer-input", "Enter")
    await widget.wait_for_function("() => [...document.querySelectorAll('.msg .bubble')].some(b => b.textContent === 'A reply to take back')")
    incoming = alice.locator(".msg-incoming")
    assert await incoming.locator(".msg-delete").count() == 0
    assert await alice.locator(".msg-note .msg-delete").count() == 0        # her note: agents delete only replies
    reply = alice.locator(".msg-outgoing", has_text="A reply to take back")
    await reply.hover()
    await reply.locator(".msg-delete").click()
    await alice.get_by_role("dialog", name="Delete this message?").get_by_role("button", name="Delete message").click()
    # Gone everywhere, live: the widget shows it deleted, the other inboxes too.
    await widget.wait_for_function("() => [...document.querySelectorAll('.msg .bubble')].some(b => b.textContent === 'This message was deleted')")
    assert "A reply to take back" not in await widget_bubbles(widget)
    await mia.locator(".msg-outgoing .deleted-text", has_text="This message was deleted").wait_for()

    # The owner may delete the shopper's message.
    await conversation_row(owner, f"Nora {tag}")
    await open_conversation_of(owner, f"Nora {tag}")
    first = owner.locator(".msg-incoming", has_text=f"Notes {tag}")
    await first.hover()
    await first.locator(".msg-delete").click()
    await owner.get_by_role("dialog", name="Delete this message?").get_by_role("button", name="Delete message").click()
    await widget.wait_for_function("() => document.querySelector('.msg .bubble').textContent === 'This message was deleted'")
    await alice.locator(".msg-incoming .deleted-text").wait_for()
    assert (await inbox_bubbles(alice))[0] == "This message was deleted"
    save_screenshot("inbox-note-mention.png", await mia.screenshot())


async def test_availability_shows_live_to_teammates_and_to_the_widget(stack, browsers, owner_db):
    tag = uuid.uuid4().hex[:6]
    _, email, password = await add_member(stack, owner_db, role="agent", name=f"Olly {tag}")
    admin_id, admin_email, admin_password = await add_member(stack, owner_db, role="admin", name=f"Adi {tag}")
    a_ctx, o_ctx, shop_ctx = await browsers.new(), await browsers.new(), await browsers.new()
    admin = await sign_in(a_ctx, stack, admin_email, admin_password, path="/app/settings/team")
    row = admin.locator("tr", has_text=f"Olly {tag}")
    await row.locator(".availability-label", has_text="Offline").wait_for()
    olly = await sign_in(o_ctx, stack, email, password)
    assert await olly.input_value("select.availability") == "offline"      # nobody chose for him

    await olly.select_option("select.availability", "online")
    await row.locator(".availability-label", has_text="Online").wait_for()
    shop, widget = await open_demo_shop(shop_ctx, stack)
    await widget.wait_for_function("() => document.querySelector('.presence').textContent === 'Online'")
    await olly.select_option("select.availability", "busy")
    await row.locator(".availability-label", has_text="Busy").wait_for()

    # An admin takes him offline: his own control follows, live.
    await row.get_by_role("button", name=f"Set Olly {tag} offline").click()
    await row.locator(".availability-label", has_text="Offline").wait_for()
    await olly.wait_for_function("() => document.querySelector('select.availability').value === 'offline'")
    # Reloading keeps his choice (stored, not a property of the page).
    await olly.select_option("select.availability", "online")
    await row.locator(".availability-label", has_text="Online").wait_for()
    await olly.reload()
    await olly.wait_for_selector("html[data-connection=ready]", state="attached")
    assert await olly.input_value("select.availability") == "online"


async def test_search_finds_a_word_of_a_message_and_erasure_removes_the_contact(stack, browsers):
    tag = uuid.uuid4().hex[:6]
    shop_ctx, o_ctx = await browsers.new(), await browsers.new()
    owner = await sign_in(o_ctx, stack, stack.demo["owner"], stack.demo["owner_pw"])
    shop, widget = await open_demo_shop(shop_ctx, stack, name=f"Quinn {tag}")
    await widget_send(widget, f"My invoice zebra{tag} was charged twice")
    await conversation_row(owner, f"Quinn {tag}")
    await owner.fill("#inbox-search", f"ZEBRA{tag}")
    # The message reaches PostgreSQL (where search looks) a moment after it is live: search again until then.
    for _ in range(50):
        await owner.press("#inbox-search", "Enter")
        try:
            await owner.locator(".conv", has_text=f"Quinn {tag}").locator("mark", has_text=f"zebra{tag}").wait_for(timeout=500)
            break
        except PlaywrightTimeout:
            continue
    assert await owner.locator(".conv").count() == 1
    assert "charged twice" in await owner.inner_text(".conv-preview")
    await owner.fill("#inbox-search", "")
    await owner.locator(".conv", has_text=f"Quinn {tag}").locator(".conv-preview mark").wait_for(state="detached")

    # Erasure from the sidebar (a deletion request): the contact and the conversation are gone.
    await open_conversation_of(owner, f"Quinn {tag}")
    await owner.get_by_role("button", name="Erase contact").click()
    await owner.get_by_role("dialog", name=f"Erase Quinn {tag}?").get_by_role("button", name="Erase for good").click()
    await owner.wait_for_url("**/app/")
    assert await owner.locator(".conv", has_text=f"Quinn {tag}").count() == 0
    await owner.reload()
    await owner.wait_for_selector("html[data-connection=ready]", state="attached")
    await owner.locator(".list-pane .empty:visible, .conv:visible").first.wait_for()
    assert await owner.locator(".conv", has_text=f"Quinn {tag}").count() == 0


async def test_the_team_list_is_loaded_again_after_a_failed_first_load(stack, browsers, owner_db):
    """The members endpoint answers 503 when the inbox starts: the inbox tries again and the
    @mention list offers the teammates without a reload."""
    tag = uuid.uuid4().hex[:6]
    await add_member(stack, owner_db, role="agent", name=f"Quinn {tag}")
    shop_ctx, a_ctx = await browsers.new(), await browsers.new()
    calls = []

    async def flaky_members(route):
        calls.append(route.request.url)
        if len(calls) == 1:
            await route.fulfill(status=503, content_type="application/json",
                                body='{"error": {"code": "unavailable", "message": "try again"}}')
        else:
            await route.continue_()

    await a_ctx.route("**/v1/orgs/*/members", flaky_members)
    alice = await sign_in(a_ctx, stack, stack.demo["agent"], stack.demo["agent_pw"])
    await shopper_starts_chat(shop_ctx, stack, alice, f"Nell {tag}", f"Team {tag}")
    await alice.get_by_role("tab", name="Note").click()
    await alice.type("#composer-input", "@Qui")
    await alice.locator("#mention-list [role=option]", has_text=f"Quinn {tag}").wait_for()
    assert len(calls) >= 2, "the first load failed and was tried again"
