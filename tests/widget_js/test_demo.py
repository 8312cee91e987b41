"""The demo shop page (widget_js/demo.html) that `convot up` serves at /demo."""

import re

from tests.widget_js.fake_convot import APP_ID
from tests.widget_js.support import ROOT, widget_frame

DEMO = ROOT / "widget_js" / "demo.html"


def test_template_has_exactly_the_documented_placeholders():
    html = DEMO.read_text()
    assert sorted(set(re.findall(r"\{\{(\w+)\}\}", html))) == ["api_url", "app_id"]
    assert '<script async src="{{api_url}}/widget/loader.js"></script>' in html


async def test_demo_page_chats_and_uses_the_api(context, fake):
    fake.pages["demo"] = DEMO.read_text().replace("{{app_id}}", APP_ID).replace("{{api_url}}", fake.api)
    page = await context.new_page()
    await page.goto(f"{fake.shop}/demo")
    frame = await widget_frame(page)
    await fake.wait_for(lambda: fake.sockets and fake.sockets[0].contact_id, what="socket")
    conv = fake.start_conversation(fake.sockets[0].contact_id)
    await fake.agent_message(conv, "Welcome to Northwind Candles!")
    await page.wait_for_selector("#demo-unread:has-text('1 unread')")
    await page.click("#demo-open")
    await frame.wait_for_selector(".bubble:has-text('Welcome to Northwind Candles!')")
    await page.wait_for_function("document.getElementById('demo-unread').textContent === ''")
    await page.click("#demo-identify")
    await fake.wait_for(lambda: fake.sessions[-1].get("identify"), what="identify")
    assert fake.sessions[-1]["identify"]["external_id"] == "demo-ada"
    assert await page.title() == "Northwind Candles \u2014 Convot demo shop"
