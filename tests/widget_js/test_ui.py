"""The widget's UI (widget_js/src/ui.js): isolation from hostile host CSS, text-only
rendering of hostile messages, keyboard use, ARIA, small screens; saves the screenshots of
docs/screenshots/."""

import asyncio

from tests.widget_js.fake_convot import ALICE
from tests.widget_js.support import (bubbles, load_page, open_panel, pixel_difference, rounded_rect_mask,
                                     save_screenshot, send, widget_frame)

HOSTILE_CSS = """<style>
* { display: block !important; font-size: 3em; }
iframe { border: 5px solid red !important; opacity: .3 !important; transform: scale(.5) !important;
         width: 10px !important; height: 10px !important; position: static !important;
         filter: blur(3px) !important; visibility: hidden !important; z-index: -1 !important;
         color-scheme: dark !important; margin: 40px !important; }
html body iframe[title] { display: none !important; clip-path: circle(1px) !important; }
div, button, section { all: unset !important; }
</style>"""


def _seed(fake, contact_id):
    conv = fake.start_conversation(contact_id)
    fake._append(conv, "Hi! Do you ship to Canada?", "incoming", "contact", contact_id, "c-1")
    fake._append(conv, "We do — 3 to 5 business days. Anything else?", "outgoing", "member", ALICE)
    fake._append(conv, "Great, thanks!\nOne more: gift wrap?", "incoming", "contact", contact_id, "c-2")
    return conv


async def test_hostile_host_css_changes_nothing(context, fake):
    page, frame = await load_page(context, fake, name="clean")
    _seed(fake, fake.sockets[0].contact_id)
    shots = {}
    for name, head in (("clean", ""), ("hostile", HOSTILE_CSS)):
        await page.goto(fake.page(name, head=head))
        frame = await widget_frame(page)
        await open_panel(frame)
        await frame.wait_for_function("document.querySelectorAll('.msg').length === 3")
        await frame.wait_for_selector(".presence:has-text('Online')")
        box = await page.locator("iframe[data-convot]").bounding_box()
        # The iframe is transparent around the panel and the launcher, where the (different)
        # host page shows through: compare the widget's own opaque surfaces.
        shots[name] = (box, await frame.locator(".panel").screenshot(animations="disabled"),
                       await frame.locator(".launcher").screenshot(animations="disabled"))
    clean, hostile = shots["clean"], shots["hostile"]
    assert hostile[0] == clean[0] == {"x": 696, "y": 76, "width": 400, "height": 720}
    for index, (name, radius) in enumerate((("panel", 16), ("launcher", 28)), start=1):
        a, b = clean[index], hostile[index]
        height, width = pixel_difference(a, a)[0][:2]
        shape_a, shape_b, differing = pixel_difference(a, b, rounded_rect_mask(width, height, radius))
        assert shape_a == shape_b
        assert differing == 0.0, f"{differing:.2%} of the {name}'s pixels differ on the hostile page"
    save_screenshot("widget-hostile-css.png", await page.screenshot(animations="disabled"))


async def test_hostile_message_text_is_shown_as_text_and_runs_nothing(context, fake):
    page, frame = await load_page(context, fake)
    await page.evaluate("window.__xss = 0")
    await open_panel(frame)
    hostile = ["<img src=x onerror=\"window.top.__xss=1;alert(1)\">", "<script>window.top.__xss=2</script>",
               "\"><svg onload=alert(3)>", "javascript:alert(4)", "see https://example.com/a?b=<i>c</i>."]
    await send(frame, hostile[0])
    conv = await fake.wait_for(lambda: fake.conversation_of(), what="conversation")
    await send(frame, hostile[1])
    for text in hostile[2:]:
        await fake.agent_message(conv, text)
    await frame.wait_for_function("document.querySelectorAll('.msg').length === 5")
    await asyncio.sleep(0.5)              # give an injected onerror/onload every chance to fire
    assert await bubbles(frame) == hostile
    assert await page.evaluate("window.__xss") == 0
    assert context.errors.dialogs == []
    injected = await frame.evaluate("document.querySelectorAll('.log img, .log script, .log svg, .log i').length")
    assert injected == 0
    # Only the http(s) URL became a link (ending where markup or punctuation starts).
    links = await frame.eval_on_selector_all(".log a", "els => els.map(a => [a.href, a.target, a.rel, a.textContent])")
    assert links == [["https://example.com/a?b=", "_blank", "noopener noreferrer nofollow", "https://example.com/a?b="]]


async def test_keyboard_only(context, fake):
    page, frame = await load_page(context, fake)
    await page.focus("#host-link")
    await page.keyboard.press("Tab")
    assert await frame.evaluate("document.activeElement.className") == "launcher"
    await page.keyboard.press("Enter")
    await frame.wait_for_selector(".panel", state="visible")
    assert await frame.evaluate("document.activeElement.id") == "cv-input"
    await page.keyboard.type("Line one")
    await page.keyboard.press("Shift+Enter")
    await page.keyboard.type("line two")
    await page.keyboard.press("Enter")
    await fake.wait_for(lambda: fake.messages(), what="message")
    assert fake.messages()[0]["body"] == "Line one\nline two"
    assert await frame.input_value("#cv-input") == ""
    await page.keyboard.press("Escape")
    await frame.wait_for_selector(".panel", state="hidden")
    assert await frame.evaluate("document.activeElement.className") == "launcher"
    # Space opens too; Tab walks header -> log -> composer.
    await page.keyboard.press(" ")
    await frame.wait_for_selector(".panel", state="visible")
    await page.keyboard.press("Shift+Tab")
    assert await frame.evaluate("document.activeElement.className") == "log"
    await page.keyboard.press("Shift+Tab")
    assert await frame.evaluate("document.activeElement.className") == "close"
    await page.keyboard.press("Enter")
    await frame.wait_for_selector(".panel", state="hidden")
    assert await frame.evaluate("document.activeElement.className") == "launcher"


async def test_roles_names_and_live_regions(context, fake):
    page, frame = await load_page(context, fake)
    assert await page.get_attribute("iframe[data-convot]", "title") == "Chat"
    launcher = frame.get_by_role("button", name="Open chat")
    assert await launcher.get_attribute("aria-expanded") == "false"
    assert await launcher.get_attribute("aria-controls") == "cv-panel"
    await launcher.click()
    dialog = frame.get_by_role("dialog", name="Northwind Support")
    await dialog.wait_for()
    log = frame.get_by_role("log", name="Messages")
    assert await log.get_attribute("aria-live") == "polite"
    assert await log.get_attribute("aria-relevant") == "additions"
    assert await frame.get_by_role("textbox", name="Message").count() == 1
    assert await frame.get_by_role("button", name="Send").is_disabled()
    assert await frame.get_by_role("button", name="Close chat").count() == 1
    assert await frame.get_by_role("button", name="Minimise chat").get_attribute("aria-expanded") == "true"
    await send(frame, "Hello")
    conv = await fake.wait_for(lambda: fake.conversation_of(), what="conversation")
    await fake.agent_message(conv, "Hi there")
    # Each message is read with its author.
    await frame.wait_for_selector(".them .sr:has-text('Alice Martin:')")
    assert await frame.text_content(".me .sr") == "You: "
    # Panel closed: a new team message is announced by a status region and counted on the button.
    await frame.get_by_role("button", name="Close chat").click()
    await fake.agent_message(conv, "Still there?")
    await frame.wait_for_selector("[role=status].sr:has-text('New message from Alice Martin')")
    await frame.get_by_role("button", name="Open chat, 1 unread message").wait_for()
    # Typing is announced politely.
    assert await frame.get_attribute(".typing", "aria-live") == "polite"
    assert await frame.get_attribute(".banner", "role") == "status"


async def test_small_screen_opens_full_screen(browser, fake):
    context = await browser.new_context(viewport={"width": 375, "height": 667}, device_scale_factor=1,
                                        reduced_motion="reduce", locale="en-GB", timezone_id="UTC", has_touch=True)
    try:
        page, frame = await load_page(context, fake)
        _seed(fake, fake.sockets[0].contact_id)
        await page.reload()
        frame = await widget_frame(page)
        box = await page.locator("iframe[data-convot]").bounding_box()
        assert box == {"x": 283, "y": 575, "width": 88, "height": 88}
        await open_panel(frame)
        await frame.wait_for_function("document.querySelectorAll('.msg').length === 3")
        box = await page.locator("iframe[data-convot]").bounding_box()
        assert box == {"x": 0, "y": 0, "width": 375, "height": 667}
        assert await frame.is_hidden(".launcher")
        save_screenshot("widget-mobile.png", await page.screenshot(animations="disabled"))
        await frame.click(".close")
        await frame.wait_for_selector(".launcher", state="visible")
        box = await page.locator("iframe[data-convot]").bounding_box()
        assert box["width"] == 88
    finally:
        await context.close()


async def test_screenshots_for_the_docs(context, fake):
    page, frame = await load_page(context, fake)
    conv = _seed(fake, fake.sockets[0].contact_id)
    await page.reload()
    frame = await widget_frame(page)
    await fake.wait_for(lambda: len(fake.sockets) == 1 and fake.sockets[0].contact_id, what="socket")
    await fake.agent_message(conv, "Yes — free gift wrap on every order.")
    # Unread: only what came after the shopper's own last message.
    await frame.wait_for_selector(".badge:has-text('1')")
    clip = {"x": 700, "y": 60, "width": 400, "height": 740}
    save_screenshot("widget-launcher.png", await page.screenshot(clip={"x": 900, "y": 600, "width": 200, "height": 200},
                                                                 animations="disabled"))
    await open_panel(frame)
    await fake.agent_read(conv, 3)
    await frame.wait_for_selector(".me .meta:has-text('Seen')")
    await fake.agent_typing(conv, True)
    await frame.wait_for_selector(".typing:has-text('is typing')")
    await frame.evaluate("document.activeElement.blur()")
    save_screenshot("widget-conversation.png", await page.screenshot(clip=clip, animations="disabled"))


async def test_survives_the_host_replacing_its_body(context, fake):
    """Turbo Drive and similar replace <body> on navigation: the widget comes back with its state."""
    page, frame = await load_page(context, fake)
    await open_panel(frame)
    await send(frame, "Before the navigation")
    conv = await fake.wait_for(lambda: fake.conversation_of(), what="conversation")
    await fake.agent_message(conv, "Reply before")
    await frame.wait_for_selector(".bubble:has-text('Reply before')")
    await page.evaluate("""() => {
        const body = document.createElement('body');
        body.innerHTML = '<h1>Another page of the app</h1>';
        document.body.replaceWith(body);
    }""")
    frame = await widget_frame(page)
    await frame.wait_for_function("document.querySelectorAll('.msg').length === 2")
    assert await bubbles(frame) == ["Before the navigation", "Reply before"]
    assert await frame.is_visible(".panel")
    assert await frame.text_content("#cv-title") == "Northwind Support"
    await send(frame, "After the navigation")
    await fake.wait_for(lambda: len(conv.messages) == 3, what="message after the navigation")
    await frame.wait_for_selector(".me:last-child .meta:has-text('Sent')")
    assert fake.connections == 1                      # the socket never noticed
    # A page that keeps removing it wins after a few rounds instead of looping forever.
    await page.evaluate("""() => new Promise(done => {
        const remove = () => document.querySelectorAll('iframe[data-convot]').forEach(f => f.remove());
        new MutationObserver(remove).observe(document.body, {childList: true});
        remove();
        setTimeout(done, 300);
    })""")
    assert await page.locator("iframe[data-convot]").count() == 0
