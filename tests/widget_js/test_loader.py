"""The loader (widget_js/src/loader.js) and the public API it sets up (boot.js, widget.js):
calls queued before load, open/close/toggle/show/hide, identify, ready and unread callbacks."""

import asyncio

from tests.widget_js.fake_convot import APP_ID
from tests.widget_js.support import open_panel, widget_frame

CALLBACKS = """{
    app_id: "%s",
    onReady: function () { (window.events = window.events || []).push("ready"); },
    onUnreadCountChange: function (n) { (window.events = window.events || []).push("unread:" + n); },
    q: [["identify", {external_id: "u-1", custom_data: {plan: "pro", seats: 3}}]]
}""" % APP_ID


async def test_calls_made_before_the_widget_loads_are_replayed_in_order(context, fake):
    fake.widget_gate = asyncio.Event()          # widget.js is held back until the calls are made
    page = await context.new_page()
    await page.goto(fake.page("early", config=CALLBACKS))
    await page.wait_for_function("window.Convot.__convot === 'loader'")
    await page.evaluate("""() => {
        Convot.identify({name: "Ada", custom_data: {plan: null}});
        Convot.push(["identify", {email: "ada@example.com"}]);
        Convot.onReady(function () { window.events.push("ready-2"); });
        Convot.open();
    }""")
    assert await page.locator("iframe[data-convot]").count() == 0
    fake.widget_gate.set()
    frame = await widget_frame(page)
    await page.wait_for_function("window.events && window.events.indexOf('ready-2') >= 0")
    await frame.wait_for_selector(".panel", state="visible")
    # One session request carries every identify call merged in order.
    assert len(fake.sessions) == 1
    assert fake.sessions[0]["app_id"] == APP_ID and fake.sessions[0]["visitor_token"] is None
    assert fake.sessions[0]["identify"] == {"external_id": "u-1", "name": "Ada", "email": "ada@example.com",
                                            "custom_data": {"plan": None, "seats": 3}}
    await page.wait_for_function("window.events.indexOf('unread:0') >= 0")
    assert await page.evaluate("window.events") == ["ready", "ready-2", "unread:0"]
    assert await page.evaluate("window.Convot.__convot") == "widget"
    # The API works directly now, and push runs commands at once.
    await page.evaluate("Convot.push(['close'])")
    await frame.wait_for_selector(".panel", state="hidden")


async def test_open_close_toggle_show_hide(context, fake):
    page = await context.new_page()
    await page.goto(fake.page("api"))
    frame = await widget_frame(page)
    iframe = page.locator("iframe[data-convot]")

    async def state():
        return await page.evaluate("""() => {
            const f = document.querySelector('iframe[data-convot]');
            const d = f.contentDocument;
            return {display: getComputedStyle(f).display, width: f.getBoundingClientRect().width,
                    panel: !d.querySelector('.panel').hidden,
                    expanded: d.querySelector('.launcher').getAttribute('aria-expanded')};
        }""")

    closed = await state()
    assert closed == {"display": "block", "width": 88, "panel": False, "expanded": "false"}
    await page.evaluate("Convot.open()")
    assert await state() == {"display": "block", "width": 400, "panel": True, "expanded": "true"}
    await page.evaluate("Convot.toggle()")
    assert (await state())["panel"] is False
    await page.evaluate("Convot.toggle()")
    assert (await state())["panel"] is True
    await page.evaluate("Convot.close()")
    assert await state() == closed
    await page.evaluate("Convot.hide()")
    assert (await state())["display"] == "none"
    await page.evaluate("Convot.show()")
    assert await state() == closed
    await page.evaluate("Convot.hide(); Convot.open()")     # open shows a hidden widget
    assert (await state())["panel"] is True and (await state())["display"] == "block"
    assert await iframe.get_attribute("title") == "Chat"
    assert frame  # the frame stayed the same document throughout
    assert await frame.evaluate("document.querySelectorAll('.launcher').length") == 1


async def test_unread_callback_and_badge_follow_team_messages(context, fake):
    page = await context.new_page()
    await page.goto(fake.page("unread", config=CALLBACKS))
    frame = await widget_frame(page)
    await page.wait_for_function("window.events && window.events.indexOf('unread:0') >= 0")
    await fake.wait_for(lambda: fake.sockets and fake.sockets[0].contact_id, what="socket")
    conv = fake.start_conversation(fake.sockets[0].contact_id)
    await fake.agent_message(conv, "Hello from Alice")
    await fake.agent_message(conv, "Are you there?")
    await frame.wait_for_selector(".badge:not([hidden])")
    assert await frame.text_content(".badge") == "2"
    assert "2 unread messages" in await frame.get_attribute(".launcher", "aria-label")
    await page.wait_for_function("window.events.indexOf('unread:2') >= 0")
    await open_panel(frame)
    await frame.wait_for_selector(".badge", state="hidden")
    await page.wait_for_function("window.events[window.events.length - 1] === 'unread:0'")
    # Opening read them: the team sees a read receipt up to the last message.
    await fake.wait_for(lambda: fake.widget_frames("read"), what="read receipt")
    assert fake.widget_frames("read")[-1] == {"type": "read", "conversation_id": conv.id, "seq": 2}


async def test_misuse_is_reported_and_harmless(context, fake):
    page = await context.new_page()
    warnings = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    await page.goto(fake.page("misuse", config=CALLBACKS))
    await widget_frame(page)
    await page.wait_for_function("window.events && window.events.indexOf('ready') >= 0")
    await page.evaluate("""() => {
        Convot.push("open");
        Convot.push(["destroyEverything"]);
        Convot.push(["__proto__"]);
        Convot.identify("not an object");
        Convot.onReady("not a function");
        Convot.onReady(function () { throw new Error("host bug"); });
    }""")
    await page.wait_for_function("window.Convot && true")
    await asyncio.sleep(0.2)
    assert any("push expects an array" in w for w in warnings)
    assert any("unknown command destroyEverything" in w for w in warnings)
    assert any("unknown command __proto__" in w for w in warnings)
    assert any("identify expects an object" in w for w in warnings)
    # A host callback that throws is logged, not raised into the page; the widget still works.
    await page.evaluate("Convot.open()")
    frame = await widget_frame(page)
    await frame.wait_for_selector(".panel", state="visible")
    assert len(fake.sessions) == 1      # the bad identify did not trigger a session request


async def test_bad_config_or_double_loader_does_not_break_the_page(context, fake):
    page = await context.new_page()
    warnings = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    await page.goto(fake.page("noapp", config='{app_id: "nope<script>"}'))
    await page.wait_for_load_state("load")
    await page.wait_for_function("document.readyState === 'complete'")
    assert any("app_id is missing or malformed" in w for w in warnings)
    assert await page.locator("iframe[data-convot]").count() == 0
    # The loader before the config: told so, nothing breaks.
    warnings.clear()
    await page.goto(fake.page("order", config="undefined"))
    await page.wait_for_function("document.readyState === 'complete'")
    assert any("before the loader script" in w for w in warnings)
    assert await page.locator("iframe[data-convot]").count() == 0
    # The loader twice (a theme and an app both embedding it): one widget.
    page2 = await context.new_page()
    await page2.goto(fake.page("twice", body=f'<script async src="{fake.api}/widget/loader.js"></script>'))
    await widget_frame(page2)
    await fake.wait_for(lambda: fake.connections >= 1, what="connection")
    await asyncio.sleep(0.3)
    assert await page2.locator("iframe[data-convot]").count() == 1
    assert len(fake.sessions) == 1
