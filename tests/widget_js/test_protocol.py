"""The widget on an unreliable connection (widget_js/src/protocol.js, widget.js): reconnect
with backoff, close-code ranges, resume without gaps or duplicates, the outbox sent exactly
once, in-band token refresh, send errors."""

import asyncio

from tests.widget_js.support import bubbles, load_page, open_panel, send, widget_frame


async def _conversation_with_one_message(fake, frame, text="Hello"):
    await open_panel(frame)
    await send(frame, text)
    conv = await fake.wait_for(lambda: fake.conversation_of(), what="conversation")
    await frame.wait_for_selector(".me .meta:has-text('Sent')")
    return conv


async def test_gateway_restart_mid_conversation_loses_and_doubles_nothing(context, fake):
    page, frame = await load_page(context, fake)
    conv = await _conversation_with_one_message(fake, frame, "Before the restart")
    await fake.agent_message(conv, "Agent before")
    await frame.wait_for_selector(".bubble:has-text('Agent before')")

    await fake.stop_gateway(code=1012)
    await frame.wait_for_selector(".banner:has-text('Reconnecting')")
    await send(frame, "Typed while disconnected")
    await frame.wait_for_selector(".me .meta:has-text('Sending')")
    await fake.agent_message(conv, "Agent while you were away")          # stored, not delivered
    attempts = fake.attempts
    await fake.wait_for(lambda: fake.attempts >= attempts + 2, what="retries while the gateway is down")
    fake.start_gateway()

    await frame.wait_for_selector(".bubble:has-text('Agent while you were away')")
    await frame.wait_for_selector(".banner", state="hidden")
    await fake.wait_for(lambda: len(conv.messages) == 4, what="offline message delivered")
    await fake.agent_message(conv, "Agent after")
    await frame.wait_for_selector(".bubble:has-text('Agent after')")
    await asyncio.sleep(0.3)
    assert [m["body"] for m in conv.messages] == ["Before the restart", "Agent before", "Agent while you were away",
                                                  "Typed while disconnected", "Agent after"]
    assert await bubbles(frame) == [m["body"] for m in conv.messages]      # same order, nothing twice
    resume = fake.widget_frames("resume")[-1]
    assert resume == {"type": "resume", "conversations": {conv.id: 2}, "ref": "resume"}
    assert fake.connections == 2


async def test_lost_ack_is_retried_with_the_same_client_msg_id_and_stored_once(context, fake):
    page, frame = await load_page(context, fake)
    conv = await _conversation_with_one_message(fake, frame)
    fake.swallow_acks = 1                     # stored durably, then the socket dies before the ack
    await send(frame, "Exactly once please")
    await fake.wait_for(lambda: fake.connections == 2 and len(fake.widget_frames("send")) == 3,
                        what="resend after reconnect")
    await frame.wait_for_selector(".me .meta:has-text('Sent')")
    sends = [f for f in fake.widget_frames("send") if f["body"] == "Exactly once please"]
    assert len(sends) == 2 and sends[0]["client_msg_id"] == sends[1]["client_msg_id"]
    assert [m["body"] for m in conv.messages] == ["Hello", "Exactly once please"]
    await asyncio.sleep(0.3)
    assert await bubbles(frame) == ["Hello", "Exactly once please"]


async def test_retry_of_a_conversation_starting_message_after_a_reload_is_stored_once(context, fake):
    page, frame = await load_page(context, fake)
    await open_panel(frame)
    fake.swallow_acks = 1                     # the conversation is created, the ack never comes
    fake.gateway_up = False                   # ... and the page reloads before any reconnect
    await send(frame, "My first message")
    conv = await fake.wait_for(lambda: fake.conversation_of(), what="conversation")
    await frame.wait_for_selector(".banner:has-text('Reconnecting')")
    await page.reload()
    frame = await widget_frame(page)
    fake.start_gateway()
    # The session lists the new conversation; the retry still goes as the conversation's start,
    # which the gateway deduplicates (a send *into* it would be a different idempotency key).
    await fake.wait_for(lambda: len(fake.widget_frames("send")) == 2, what="retry")
    first, retry = fake.widget_frames("send")
    assert retry["client_msg_id"] == first["client_msg_id"] and "conversation_id" not in retry
    await open_panel(frame)
    await frame.wait_for_selector(".me .meta:has-text('Sent')")
    assert [m["body"] for m in conv.messages] == ["My first message"] and len(fake.conversations) == 1
    assert await bubbles(frame) == ["My first message"]


async def test_terminal_close_gets_one_new_token_then_stops(context, fake):
    page, frame = await load_page(context, fake)
    await open_panel(frame)
    contact = fake.sockets[0].contact_id
    fake.revoked.add(contact)                 # every authenticate of this contact is refused now
    await fake.close_sockets(4403, "access_revoked")
    # docs/protocol.md: never the same credentials again; a new token at most once ...
    await frame.wait_for_selector(".banner.bad:has-text('Chat is unavailable right now.')")
    assert len(fake.sessions) == 2 and fake.connections == 2
    tokens = [f["token"] for f in fake.widget_frames("authenticate")]
    assert len(tokens) == 2 and tokens[0] != tokens[1]
    # ... then stop: not even coming back online wakes it up.
    await page.evaluate("window.dispatchEvent(new Event('online'))")
    await asyncio.sleep(2.0)                  # longer than the first two backoff delays together
    assert fake.attempts == 2 and len(fake.sessions) == 2


async def test_terminal_close_recovers_with_a_new_token(context, fake):
    page, frame = await load_page(context, fake)
    conv = await _conversation_with_one_message(fake, frame)
    await fake.close_sockets(4402, "token_revoked")          # e.g. that token was revoked
    await fake.wait_for(lambda: len(fake.widget_frames("authenticate")) == 2, what="reconnect with a new token")
    assert len(fake.sessions) == 2
    await fake.agent_message(conv, "Back")
    await frame.wait_for_selector(".bubble:has-text('Back')")
    await frame.wait_for_selector(".banner", state="hidden")


async def test_reconnect_code_reconnects_and_resumes_from_the_last_sequence(context, fake):
    page, frame = await load_page(context, fake)
    conv = await _conversation_with_one_message(fake, frame)
    await fake.agent_message(conv, "one")
    await fake.agent_message(conv, "two")
    await frame.wait_for_selector(".bubble:has-text('two')")
    await fake.close_sockets(4001, "slow_consumer")
    await fake.wait_for(lambda: fake.widget_frames("resume"), what="resume")
    assert fake.widget_frames("resume")[-1]["conversations"] == {conv.id: 3}
    assert fake.connections == 2 and len(fake.sessions) == 1     # same token, no new session


async def test_token_is_refreshed_in_band_without_dropping_the_socket(context, fake):
    fake.token_ttl = 4                        # refresh at 2.5 s; the fake closes 4003 at expiry
    page, frame = await load_page(context, fake)
    await fake.wait_for(lambda: len(fake.widget_frames("token.refresh")) >= 2, timeout=15, what="two refreshes")
    refreshes = fake.widget_frames("token.refresh")
    assert refreshes[0]["ref"] == "refresh" and refreshes[0]["token"] != refreshes[1]["token"]
    assert fake.connections == 1              # never dropped, although each token lived 4 s
    assert len(fake.sessions) >= 3 and all(s["visitor_token"] for s in fake.sessions[1:])
    await open_panel(frame)
    await send(frame, "Still here")
    await fake.wait_for(lambda: fake.messages(), what="message on the refreshed socket")


async def test_expired_token_close_gets_a_new_session_then_reconnects(context, fake):
    page, frame = await load_page(context, fake)
    sessions = len(fake.sessions)
    await fake.close_sockets(4003, "token_expired")
    await fake.wait_for(lambda: len(fake.widget_frames("authenticate")) == 2, what="reconnect")
    assert len(fake.sessions) == sessions + 1 and fake.connections == 2
    tokens = [f["token"] for f in fake.widget_frames("authenticate")]
    assert tokens[0] != tokens[1]


async def test_message_typed_offline_survives_a_reload(context, fake):
    page, frame = await load_page(context, fake)
    conv = await _conversation_with_one_message(fake, frame)
    await fake.stop_gateway()
    await send(frame, "Typed, then the page reloaded")
    await frame.wait_for_selector(".me .meta:has-text('Sending')")
    await page.reload()
    frame = await widget_frame(page)
    await open_panel(frame)
    await frame.wait_for_selector(".bubble:has-text('Typed, then the page reloaded')")
    fake.start_gateway()
    await fake.wait_for(lambda: len(conv.messages) == 2, what="delivered after reload")
    await frame.wait_for_function("document.querySelectorAll('.msg').length === 2 && "
                                  "!document.querySelector('.log').textContent.includes('Sending')")
    assert await bubbles(frame) == ["Hello", "Typed, then the page reloaded"]
    assert [m["body"] for m in conv.messages] == ["Hello", "Typed, then the page reloaded"]


async def test_private_notes_gaps_and_duplicate_events(context, fake):
    page, frame = await load_page(context, fake)
    conv = await _conversation_with_one_message(fake, frame)
    first = await fake.agent_message(conv, "A")
    await fake.fanout(conv, first)                                 # the same event twice
    note = await fake.agent_note(conv, "internal: refund approved")   # seq 3, never sent to shoppers
    await fake.agent_message(conv, "C")
    await frame.wait_for_selector(".bubble:has-text('C')")
    await asyncio.sleep(0.5)
    assert await bubbles(frame) == ["Hello", "A", "C"]
    assert note["seq"] == 3 and not fake.widget_frames("resume")   # a gap in seq is not a loss
    # On a reconnect the widget resumes from the highest seq it received.
    await fake.close_sockets(4000, "server_shutdown")
    await fake.wait_for(lambda: fake.widget_frames("resume"), what="resume")
    assert fake.widget_frames("resume")[-1]["conversations"] == {conv.id: 4}
    await asyncio.sleep(0.3)
    assert await bubbles(frame) == ["Hello", "A", "C"]


async def test_a_message_too_big_for_a_frame_is_never_sent(context, fake):
    fake.max_frame_bytes = 2048               # a gateway configured with small frames
    page, frame = await load_page(context, fake)
    conv = await _conversation_with_one_message(fake, frame)
    # 600 characters that each take 6 bytes in JSON: within max_message_chars, over the frame size.
    text = "\u0001" * 600
    await frame.evaluate("t => { const i = document.querySelector('#cv-input'); i.value = t; "
                         "i.dispatchEvent(new Event('input')); }", text)
    await frame.press("#cv-input", "Enter")
    await frame.wait_for_selector(".failed .meta:has-text('Message is too long.')")
    assert [f["body"] for f in fake.widget_frames("send")] == ["Hello"]
    assert fake.connections == 1 and len(conv.messages) == 1


async def test_send_dropped_by_the_rate_limit_is_sent_again(context, fake):
    page, frame = await load_page(context, fake)
    conv = await _conversation_with_one_message(fake, frame)
    fake.rate_limit_sends = 1
    await send(frame, "Second")
    await fake.wait_for(lambda: len(conv.messages) == 2, what="resent message")
    sends = [f for f in fake.widget_frames("send") if f["body"] == "Second"]
    assert len(sends) == 2 and sends[0]["client_msg_id"] == sends[1]["client_msg_id"]
    await frame.wait_for_selector(".me:last-child .meta:has-text('Sent')")
    assert await bubbles(frame) == ["Hello", "Second"]


async def test_send_errors(context, fake):
    page, frame = await load_page(context, fake)
    conv = await _conversation_with_one_message(fake, frame)
    assert await frame.get_attribute("#cv-input", "maxlength") == "8000"     # from ready's limits
    fake.max_chars = 20                       # lowered after this socket's ready (a config change)
    await send(frame, "x" * 30)
    await frame.wait_for_selector(".failed .meta:has-text('Not sent. Message is too long.')")
    fake.max_chars = 8000
    await frame.click(".failed .retry")
    await frame.wait_for_function("!document.querySelector('.failed')")
    await fake.wait_for(lambda: len(conv.messages) == 2, what="retried message")
    # The conversation was deleted meanwhile: the next message starts a new one.
    conv.deleted = True
    await send(frame, "Anyone?")
    second = await fake.wait_for(lambda: next((c for c in fake.conversations.values() if c is not conv), None),
                                 what="new conversation")
    assert [m["body"] for m in second.messages] == ["Anyone?"]
    await frame.wait_for_function("document.querySelectorAll('.msg').length === 1")
    assert await bubbles(frame) == ["Anyone?"]
