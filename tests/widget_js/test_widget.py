"""The widget's conversation (widget_js/src/widget.js): messages both ways, typing both ways,
read receipts, presence, identify, email prompt, deleted messages, history paging."""

import asyncio

from tests.widget_js.fake_convot import ALICE, APP_ID, BOB, user_hash
from tests.widget_js.support import bubbles, load_page, open_panel, send


async def test_shopper_and_agent_exchange_messages_both_ways(context, fake):
    page, frame = await load_page(context, fake)
    await open_panel(frame)
    await send(frame, "Hi, my order #1001 is late")
    conv = await fake.wait_for(lambda: fake.conversation_of(), what="conversation")
    assert [m["body"] for m in conv.messages] == ["Hi, my order #1001 is late"]
    first = fake.widget_frames("send")[0]
    assert "conversation_id" not in first and first["ref"] == first["client_msg_id"]   # starts the conversation
    await frame.wait_for_selector(".me .meta:has-text('Sent')")
    await fake.agent_message(conv, "Sorry! Let me check.")
    await frame.wait_for_selector(".them .bubble:has-text('Let me check')")
    assert await frame.text_content(".them .who") == "AMAlice Martin"
    await send(frame, "Thanks")
    await fake.wait_for(lambda: len(conv.messages) == 3, what="third message")
    later = fake.widget_frames("send")[-1]
    assert later["conversation_id"] == conv.id
    await frame.wait_for_function("document.querySelectorAll('.msg').length === 3")
    assert await bubbles(frame) == ["Hi, my order #1001 is late", "Sorry! Let me check.", "Thanks"]
    # Private notes never reach the shopper's socket (the fake, like the gateway, filters them);
    # even if one did arrive, the widget would not render it.
    await fake.agent_note(conv, "internal: VIP")
    await frame.evaluate("""() => {}""")
    assert "internal: VIP" not in await bubbles(frame)


async def test_typing_indicators_both_ways(context, fake):
    page, frame = await load_page(context, fake)
    await open_panel(frame)
    await send(frame, "Hello")
    conv = await fake.wait_for(lambda: fake.conversation_of(), what="conversation")
    await fake.wait_for(lambda: len(conv.messages) == 1, what="message")
    # Shopper -> team: typing frames while typing (throttled), then active=false when cleared.
    await frame.type("#cv-input", "I have a question", delay=15)
    await fake.wait_for(lambda: fake.widget_frames("typing"), what="typing frame")
    typing = fake.widget_frames("typing")
    assert typing[0] == {"type": "typing", "conversation_id": conv.id, "active": True}
    assert len(typing) == 1           # one frame for a burst of keystrokes
    await frame.fill("#cv-input", "")
    await fake.wait_for(lambda: fake.widget_frames("typing")[-1]["active"] is False, what="typing stopped")
    # Team -> shopper: shown with the agent's name, cleared by active=false.
    await fake.agent_typing(conv, True)
    await frame.wait_for_selector(".typing:has-text('Alice Martin is typing')")
    await fake.agent_typing(conv, False)
    await frame.wait_for_selector(".typing:has-text('is typing')", state="detached")
    # ... and by the agent's message itself.
    await fake.agent_typing(conv, True)
    await frame.wait_for_selector(".typing:has-text('is typing')")
    await fake.agent_message(conv, "Sure, go ahead")
    await frame.wait_for_selector(".typing:has-text('is typing')", state="detached")


async def test_read_receipts_both_ways(context, fake):
    page, frame = await load_page(context, fake)
    await open_panel(frame)
    await send(frame, "First")
    await send(frame, "Second")
    conv = await fake.wait_for(lambda: fake.conversation_of(), what="conversation")
    await fake.wait_for(lambda: len(conv.messages) == 2, what="messages")
    await frame.wait_for_selector(".me:last-child .meta:has-text('Sent')")
    # The agent read up to seq 2: the latest own message says Seen.
    await fake.agent_read(conv, 2)
    await frame.wait_for_selector(".msg.me .meta:has-text('Seen')")
    metas = await frame.eval_on_selector_all(".msg.me .meta", "els => els.map(e => e.textContent)")
    assert metas[0] == "" and metas[1].startswith("Seen")
    # The shopper reads the agent's reply while the panel is open: one receipt to the team.
    await fake.agent_message(conv, "Reply")
    await fake.wait_for(lambda: conv.shopper_read == 3, what="shopper read receipt")
    # With the panel closed, a new reply stays unread and no receipt goes out.
    await frame.click(".close")
    await fake.agent_message(conv, "Another")
    await frame.wait_for_selector(".badge:has-text('1')")
    await asyncio.sleep(0.5)
    assert conv.shopper_read == 3


async def test_presence_and_agents_in_the_header(context, fake):
    fake.team_online = False
    page, frame = await load_page(context, fake)
    await open_panel(frame)
    assert await frame.text_content(".presence") == "Away \u2014 we'll get back to you"
    assert await frame.eval_on_selector_all(".faces .av", "els => els.map(e => e.textContent)") == ["AM", "BL"]
    # A gateway sending members' states only: the widget sums them up.
    await fake.presence(ALICE, "online")
    await frame.wait_for_selector(".presence.on:has-text('Online')")
    await fake.presence(ALICE, "offline")
    await frame.wait_for_selector(".presence:not(.on)")
    # With the team's summary (engine/availability.py), the summary decides.
    await fake.presence(ALICE, "busy", team="away")
    await fake.presence(BOB, "online", team="online")
    await frame.wait_for_selector(".presence.on:has-text('Online')")
    await fake.presence(BOB, "busy", team="away")
    await frame.wait_for_selector(".presence:not(.on):has-text('Away')")


async def test_identify_switches_to_the_identified_contact(context, fake):
    page, frame = await load_page(context, fake)
    await open_panel(frame)
    await send(frame, "Anonymous question")
    anon = await fake.wait_for(lambda: fake.conversation_of(), what="conversation")
    anon_contact = anon.contact_id
    # A known customer with a conversation of their own.
    from tests.widget_js.fake_convot import Contact
    known = Contact(id="2b7c6b5e-1111-4111-8111-111111111111", external_id="cust-9", email="ada@example.com")
    fake.contacts[known.id] = known
    theirs = fake.start_conversation(known.id)
    await fake.agent_message(theirs, "Welcome back, Ada")
    connections = fake.connections
    await page.evaluate("""h => Convot.identify({external_id: "cust-9", email: "ada@example.com", name: "Ada",
                                                 user_hash: h, custom_data: {plan: "pro"}})""", user_hash("cust-9"))
    await frame.wait_for_selector(".them .bubble:has-text('Welcome back, Ada')")
    assert "Anonymous question" not in await bubbles(frame)
    assert fake.connections == connections + 1            # a new socket for the new contact
    assert fake.sockets[-1].contact_id == known.id
    last = fake.sessions[-1]
    assert last["identify"] == {"external_id": "cust-9", "email": "ada@example.com", "name": "Ada",
                                "user_hash": user_hash("cust-9"), "custom_data": {"plan": "pro"}}
    assert known.verified and known.name == "Ada" and known.custom_data == {"plan": "pro"}
    assert anon_contact != known.id
    # Identify again with the same contact: new token in-band, same socket.
    await page.evaluate("Convot.identify({company: 'Analytical Engines'})")
    await fake.wait_for(lambda: fake.widget_frames("token.refresh"), what="in-band token")
    assert fake.connections == connections + 1
    assert fake.sessions[-1]["identify"]["company"] == "Analytical Engines"


async def test_forged_user_hash_on_an_app_that_requires_verification(context, fake):
    fake.require_verification = True
    config = '{app_id: "%s", q: [["identify", {external_id: "cust-1", user_hash: "%s"}]]}' % (APP_ID, "0" * 64)
    page = await context.new_page()
    warnings = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    await page.goto(fake.page("forged", config=config))
    from tests.widget_js.support import widget_frame
    frame = await widget_frame(page)
    await open_panel(frame)
    await frame.wait_for_selector(".banner.bad:has-text('Chat is unavailable right now.')")
    assert any("identity_verification_required" in w for w in warnings)
    assert fake.connections == 0 and len(fake.sessions) == 1          # refused: no retry loop
    # The site then identifies with a valid hash: the widget starts.
    await page.evaluate("h => Convot.identify({user_hash: h})", user_hash("cust-1"))
    await fake.wait_for(lambda: fake.connections == 1, what="connection after a valid identify")
    await frame.wait_for_selector(".banner", state="hidden")
    assert next(iter(fake.contacts.values())).verified


async def test_email_prompt_when_the_app_asks_for_it(context, fake):
    fake.settings = dict(fake.settings, email_prompt=True)
    page, frame = await load_page(context, fake)
    await open_panel(frame)
    assert await frame.is_hidden(".email")                    # nothing asked before the first message
    await send(frame, "Do you ship to Canada?")
    await frame.wait_for_selector(".email", state="visible")
    await frame.fill("#cv-email", "not-an-email")
    await frame.press("#cv-email", "Enter")
    await frame.wait_for_selector("#cv-email-err:has-text('valid email')")
    assert await frame.get_attribute("#cv-email", "aria-invalid") == "true"
    sessions = len(fake.sessions)
    await frame.fill("#cv-email", "sam@example.com")
    await frame.click(".email button")
    await frame.wait_for_selector(".email", state="hidden")
    assert len(fake.sessions) == sessions + 1
    assert fake.sessions[-1]["identify"] == {"email": "sam@example.com"}
    assert next(c for c in fake.contacts.values()).email == "sam@example.com"


async def test_app_colour_and_greeting_are_applied_as_given(context, fake):
    fake.settings = {"color": "#ffd400", "greeting": "Hello <b>there</b>", "email_prompt": False}
    fake.app_name = "Acme <i>Help</i>"
    page, frame = await load_page(context, fake)
    await open_panel(frame)
    styles = await frame.evaluate("""() => {
        const head = getComputedStyle(document.querySelector('.head'));
        return {bg: head.backgroundColor, fg: head.color,
                greet: document.querySelector('.greet').textContent,
                title: document.querySelector('#cv-title').textContent,
                tags: document.querySelectorAll('b, i').length};
    }""")
    # A light brand colour gets dark text.
    assert styles == {"bg": "rgb(255, 212, 0)", "fg": "rgb(17, 17, 17)", "greet": "Hello <b>there</b>",
                      "title": "Acme <i>Help</i>", "tags": 0}


async def test_deleted_message_shows_live(context, fake):
    page, frame = await load_page(context, fake)
    await open_panel(frame)
    await send(frame, "Hi")
    conv = await fake.wait_for(lambda: fake.conversation_of(), what="conversation")
    await fake.agent_message(conv, "Oops, wrong customer: ORDER-7731")
    await frame.wait_for_selector(".bubble:has-text('ORDER-7731')")
    await fake.delete_message(conv, 2)
    await frame.wait_for_selector(".deleted .bubble:has-text('This message was deleted')")
    assert "ORDER-7731" not in await frame.text_content(".log")


async def test_history_loads_the_latest_page_then_older_on_scroll(context, fake):
    page, frame = await load_page(context, fake, name="first")
    contact_id = fake.sockets[0].contact_id
    conv = fake.start_conversation(contact_id)
    for i in range(1, 76):
        if i % 2:
            fake._append(conv, f"shopper {i}", "incoming", "contact", contact_id, f"cid-{i}")
        else:
            fake._append(conv, f"agent {i}", "outgoing", "member", ALICE)
    await page.reload()
    from tests.widget_js.support import widget_frame
    frame = await widget_frame(page)
    await open_panel(frame)
    await frame.wait_for_function("document.querySelectorAll('.msg').length === 50")
    assert (await bubbles(frame))[0] == "agent 26"
    history = fake.widget_frames("history")
    assert history[-1] == {"type": "history", "conversation_id": conv.id, "limit": 50, "ref": "history"}
    # The latest page is at the bottom, in view; scrolling to the top loads the rest.
    assert await frame.evaluate("(() => { const l = document.querySelector('.log'); "
                                "return l.scrollHeight - l.scrollTop - l.clientHeight < 2; })()")
    await frame.evaluate("document.querySelector('.log').scrollTop = 0")
    await frame.wait_for_function("document.querySelectorAll('.msg').length === 75")
    assert fake.widget_frames("history")[-1]["before_seq"] == 26
    texts = await bubbles(frame)
    assert texts[0] == "shopper 1" and texts[-1] == "shopper 75" and len(set(texts)) == 75
    # What was on screen stays on screen (the older page went above it).
    assert await frame.evaluate("document.querySelector('.log').scrollTop") > 0


async def test_reset_forgets_the_visitor_on_sign_out(context, fake):
    page, frame = await load_page(context, fake)
    await page.evaluate("Convot.identify({email: 'first@example.com', name: 'First'})")
    await fake.wait_for(lambda: len(fake.sessions) == 2, what="identified session")
    await open_panel(frame)
    await send(frame, "Private question")
    await fake.wait_for(lambda: fake.messages(), what="message")
    first_contact = fake.sockets[-1].contact_id
    stored = await page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('convot:'))")
    assert any(k.endswith(":visitor") for k in stored)
    await page.evaluate("Convot.reset()")
    await fake.wait_for(lambda: len(fake.sessions) == 3 and fake.sockets and fake.sockets[-1].contact_id
                        and fake.sockets[-1].contact_id != first_contact, what="new anonymous session")
    assert fake.sessions[-1]["visitor_token"] is None and fake.sessions[-1]["identify"] is None
    await frame.wait_for_function("document.querySelectorAll('.msg').length === 0")
    stored = await page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('convot:'))")
    assert stored == [f"convot:{APP_ID}:visitor"]                   # the new visitor's only
    assert len([s for s in fake.sockets if not s.ws.closed]) == 1


async def test_reading_in_one_tab_clears_the_badge_in_the_others(context, fake):
    page, frame = await load_page(context, fake)
    await open_panel(frame)
    await send(frame, "Hi")
    conv = await fake.wait_for(lambda: fake.conversation_of(), what="conversation")
    await frame.click(".close")
    page2, frame2 = await load_page(context, fake, name="second-tab")
    await fake.agent_message(conv, "Reply for both tabs")
    for f in (frame, frame2):
        await f.wait_for_selector(".badge:has-text('1')")
    await open_panel(frame2)
    await frame.wait_for_selector(".badge", state="hidden")
