"""Settings in the inbox, driven as a person would: sign-up, email verification, invitations,
roles and overrides; two-factor authentication and sign-in with a code; "require MFA"; apps
(install snippet, widget look with live preview, identity secret); API keys; webhooks with
their delivery log; the audit log; export; organisation deletion and restore."""

from __future__ import annotations

import hashlib
import hmac
import io
import uuid
import zipfile

import aiohttp
import pytest
from aiohttp import web

from tests.inbox.support import (add_member, demo_identity_secret, link_in, new_organisation, open_demo_shop,
                                 save_screenshot, sign_in, totp_code, wait_for_mail)

pytestmark = pytest.mark.browser


async def test_sign_up_verify_accept_an_invitation_then_change_role_and_access(stack, browsers, owner_db):
    # An organisation of its own: the demo organisation's free plan seats are taken by other tests.
    org_name = f"Team {uuid.uuid4().hex[:6]}"
    org = await new_organisation(stack, owner_db, name=org_name)
    owner_ctx, new_ctx = await browsers.new(), await browsers.new()
    owner = await sign_in(owner_ctx, stack, org["owner"]["email"], org["owner"]["password"], path="/app/settings/team")
    invitee = f"new-{uuid.uuid4().hex[:8]}@example.com"
    await owner.get_by_role("button", name="Invite someone").click()
    dialog = owner.get_by_role("dialog", name="Invite someone")
    await dialog.get_by_label("Email").fill(invitee)
    await dialog.get_by_label("Role").select_option("agent")
    await dialog.get_by_role("button", name="Send invitation").click()
    await owner.locator("tr", has_text=invitee).wait_for()
    save_screenshot("inbox-settings-team.png", await owner.screenshot())

    # The invitee creates an account and confirms their address from the mail.
    page = await new_ctx.new_page()
    await page.goto(stack.api + "/app/signup")
    await page.get_by_label("Your name").fill("Nina New")
    await page.get_by_label("Email").fill(invitee)
    await page.get_by_label("Password").fill("a long enough passphrase")
    await page.get_by_role("button", name="Create account").click()
    await page.get_by_text("Check your mailbox").wait_for()
    await page.goto(link_in(await wait_for_mail(stack, invitee, "Confirm your email"), "/app/verify-email"))
    await page.get_by_text("Your email address is confirmed.").wait_for()
    assert "#token" not in page.url                 # the token leaves the address bar at once
    await page.get_by_role("link", name="Sign in").click()
    await page.fill("input[name=email]", invitee)
    await page.fill("input[name=password]", "a long enough passphrase")
    await page.click("form button[type=submit]")
    await page.get_by_role("heading", name="Welcome to Convot").wait_for()

    # The invitation link joins the organisation and opens its inbox.
    await page.goto(link_in(await wait_for_mail(stack, invitee, "You are invited"), "/app/accept-invite"))
    await page.get_by_role("button", name=f"Join {org_name}").click()
    await page.wait_for_selector(".conv-list")
    await page.wait_for_selector("html[data-connection=ready]", state="attached")

    # The owner sees Nina, grants her Revenue, then makes her an admin: she stays signed in and
    # her next request has the admin's rights.
    await owner.reload()
    row = owner.locator("tr", has_text="Nina New")
    await row.wait_for()
    revenue = row.get_by_label("Revenue")
    assert not await revenue.is_checked()
    await revenue.check()
    await owner.locator("tr", has_text="Nina New").get_by_label("Revenue").wait_for()
    assert await owner.locator("tr", has_text="Nina New").get_by_label("Revenue").is_checked()
    await owner.locator("tr", has_text="Nina New").get_by_label("Role of Nina New").select_option("admin")
    async with owner.expect_response(lambda r: r.request.method == "PATCH" and "/members/" in r.url) as answer:
        await owner.get_by_role("dialog", name="Change role?").get_by_role("button", name="Change role").click()
    assert (await answer.value).status == 200
    await owner.reload()
    assert await owner.locator("tr", has_text="Nina New").get_by_label("Role of Nina New").input_value() == "admin"
    await page.goto(stack.api + "/app/settings/audit")          # an admin's page (audit.read)
    await page.locator("h2", has_text="Audit log").wait_for()
    assert "/app/login" not in page.url


async def test_two_factor_enrolment_sign_in_with_a_code_and_required_mfa(stack, browsers, owner_db):
    org = await new_organisation(stack, owner_db, name=f"Secure {uuid.uuid4().hex[:6]}")
    owner_ctx = await browsers.new()
    owner = await sign_in(owner_ctx, stack, org["owner"]["email"], org["owner"]["password"], path="/app/settings/security")
    await owner.get_by_role("button", name="Set up two-factor authentication").click()
    dialog = owner.get_by_role("dialog", name="Set up two-factor authentication")
    await dialog.get_by_role("img", name="QR code to add Convot to your authenticator app").wait_for()
    secret = (await dialog.locator(".secret code").inner_text()).replace(" ", "")
    await dialog.get_by_role("textbox", name="6-digit code").fill("000000" if totp_code(secret) != "000000" else "111111")
    await dialog.get_by_role("button", name="Turn on").click()
    await dialog.locator(".alert-error").wait_for()
    enrolment_code = totp_code(secret)
    await dialog.get_by_role("textbox", name="6-digit code").fill(enrolment_code)
    await dialog.get_by_role("button", name="Turn on").click()
    await dialog.locator(".codes code").first.wait_for()
    codes = await dialog.locator(".codes code").all_inner_texts()
    assert len(codes) == 10 and len(set(codes)) == 10
    await dialog.get_by_role("button", name="I have saved them").click()
    await owner.locator(".card", has_text="Two-factor authentication").locator(".badge", has_text="On").wait_for()

    # Owners may now require it of everyone; the agent without MFA can only enrol.
    await owner.get_by_label("Require two-factor authentication of every member").check()
    await owner.get_by_text("Two-factor authentication is now required").wait_for(state="attached")
    agent_ctx = await browsers.new()
    agent = await agent_ctx.new_page()
    await agent.goto(stack.api + "/app/")
    await agent.fill("input[name=email]", org["agent"]["email"])
    await agent.fill("input[name=password]", org["agent"]["password"])
    await agent.click("form button[type=submit]")
    await agent.get_by_text("This organisation requires two-factor authentication").wait_for()
    assert await agent.locator(".conv-list").count() == 0
    assert await agent.locator(".settings-link").all_inner_texts() == ["Security"]

    # Signing in again takes a second step; a used code does not work twice.
    await owner.locator(".user-button").click()
    await owner.get_by_role("menuitem", name="Sign out").click()
    await owner.fill("input[name=email]", org["owner"]["email"])
    await owner.fill("input[name=password]", org["owner"]["password"])
    await owner.click("form button[type=submit]")
    await owner.get_by_role("heading", name="Two-factor authentication").wait_for()
    save_screenshot("inbox-login-mfa.png", await owner.screenshot())
    await owner.get_by_label("6-digit code from your authenticator app").fill(enrolment_code)
    await owner.get_by_role("button", name="Verify").click()
    await owner.get_by_role("alert").wait_for()                    # the code of the enrolment was spent
    await owner.get_by_role("button", name="Use a recovery code instead").click()
    await owner.get_by_label("Recovery code").fill(codes[0])
    await owner.get_by_role("button", name="Verify").click()
    await owner.wait_for_selector(".conv-list")


async def test_app_settings_preview_snippet_origins_and_identity_secret(stack, browsers, owner_db):
    owner_ctx = await browsers.new()
    owner = await sign_in(owner_ctx, stack, stack.demo["owner"], stack.demo["owner_pw"], path="/app/settings/apps")
    await owner.get_by_role("link", name="Demo app").click()
    snippet = await owner.locator("pre.code code").first.inner_text()
    assert f'app_id: "{stack.demo["app_id"]}"' in snippet
    assert f'src="{stack.api}/widget/loader.js"' in snippet

    # The preview follows the form as it is typed, before saving.
    greeting = f"Hello from the preview {uuid.uuid4().hex[:6]}"
    await owner.get_by_role("textbox", name="Greeting").fill(greeting)
    await owner.locator("input[type=color]").fill("#0f766e")
    head = owner.locator(".widget-preview .wp-head")
    assert await owner.inner_text(".wp-greeting") == greeting
    assert await head.evaluate("el => getComputedStyle(el).backgroundColor") == "rgb(15, 118, 110)"
    assert await head.evaluate("el => getComputedStyle(el).color") == "rgb(255, 255, 255)"
    await owner.locator("input[type=color]").fill("#fde68a")
    assert await head.evaluate("el => getComputedStyle(el).color") == "rgb(0, 0, 0)"
    origins = owner.get_by_label("Allowed origins")
    await origins.fill(stack.api + "\nnot a url")
    await owner.get_by_role("button", name="Save changes").click()
    await owner.get_by_text("Each line must be an origin").wait_for()
    await origins.fill(stack.api + "\nhttps://admin.shopify.com")
    await owner.get_by_role("button", name="Save changes").click()
    await owner.get_by_text("Saved.").wait_for()
    await owner.eval_on_selector(".settings-content", "el => el.scrollTo(0, 0)")
    save_screenshot("inbox-settings-app.png", await owner.screenshot())

    # Saved: the shop's widget greets with it.
    shop_ctx = await browsers.new()
    _, widget = await open_demo_shop(shop_ctx, stack)
    await widget.click(".launcher")
    await widget.locator(".greet", has_text=greeting).wait_for()

    # The identity secret: revealed on request, rotated on request.
    before = await demo_identity_secret(stack, owner_db)
    await owner.get_by_role("button", name="Reveal").click()
    await owner.locator(".secret-value", has_text=before).wait_for()
    await owner.get_by_role("button", name="Rotate").click()
    await owner.get_by_role("dialog", name="Rotate the identity secret?").get_by_role("button", name="Rotate").click()
    await owner.wait_for_function("(old) => { const v = document.querySelector('.secret-value').textContent; "
                                  "return /^[0-9a-f]{64}$/.test(v) && v !== old; }", arg=before)
    after = await demo_identity_secret(stack, owner_db)
    assert after != before and await owner.inner_text(".secret-value") == after


async def test_api_keys_webhooks_with_their_log_the_audit_log_and_export(stack, browsers):
    received: list[tuple[dict, bytes]] = []

    async def receive(request):
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", receive)
    runner = web.AppRunner(receiver)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        owner_ctx = await browsers.new(accept_downloads=True)
        owner = await sign_in(owner_ctx, stack, stack.demo["owner"], stack.demo["owner_pw"], path="/app/settings/api-keys")

        # An API key: shown once, works, and stops working when revoked.
        name = f"Zapier {uuid.uuid4().hex[:6]}"
        await owner.get_by_role("button", name="New API key").click()
        dialog = owner.get_by_role("dialog", name="New API key")
        await dialog.get_by_label("Name").fill(name)
        await dialog.get_by_label("conversations:read").check()
        await dialog.get_by_role("button", name="Create key").click()
        shown = owner.get_by_role("dialog", name="Your new API key")
        key = await shown.locator("pre code").inner_text()
        assert key.startswith("ck_")
        await shown.get_by_role("button", name="Done").click()
        url = f"{stack.api}/v1/orgs/{stack.demo['org_id']}/conversations"
        async with aiohttp.ClientSession() as http:
            async with http.get(url, headers={"Authorization": f"Bearer {key}"}) as resp:
                assert resp.status == 200
            row = owner.locator("tr", has_text=name)
            await row.get_by_role("button", name="Revoke").click()
            await owner.get_by_role("dialog", name=f"Revoke {name}?").get_by_role("button", name="Revoke").click()
            await owner.locator("tr", has_text=name).get_by_text("Revoked").wait_for()
            async with http.get(url, headers={"Authorization": f"Bearer {key}"}) as resp:
                assert resp.status == 401

        # A webhook endpoint: its secret shown once; the test event arrives signed and is logged.
        await owner.get_by_role("link", name="Webhooks").click()
        await owner.get_by_role("button", name="New endpoint").click()
        dialog = owner.get_by_role("dialog", name="New webhook endpoint")
        await dialog.get_by_label("URL").fill(f"http://127.0.0.1:{port}/hook")
        await dialog.get_by_role("button", name="Add endpoint").click()
        shown = owner.get_by_role("dialog", name="Signing secret")
        secret = await shown.locator("pre code").inner_text()
        await shown.get_by_role("button", name="Done").click()
        await owner.get_by_role("link", name=f"http://127.0.0.1:{port}/hook").click()
        await owner.get_by_role("button", name="Send test event").click()
        await owner.locator("table tr", has_text="webhook.test").locator(".pill", has_text="delivered").wait_for(timeout=30_000)
        headers, body = received[-1]
        timestamp = dict(p.split("=", 1) for p in headers["Convot-Signature"].split(","))["t"]
        expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        assert f"v1={expected}" in headers["Convot-Signature"]

        # The audit log shows what was just done.
        await owner.get_by_role("link", name="Audit log").click()
        await owner.locator("table code", has_text="webhook.created").first.wait_for()
        assert await owner.locator("table code", has_text="api_key.revoked").count() >= 1

        # Export: started, built by the engine worker, downloaded through its signed link.
        await owner.get_by_role("link", name="Export & deletion").click()
        await owner.get_by_role("button", name="Export all data").click()
        download_button = owner.get_by_role("button", name="Download")
        await download_button.first.wait_for(timeout=60_000)     # the page looks again while it is built
        async with owner.expect_download() as download:
            await download_button.first.click()
        archive = zipfile.ZipFile(io.BytesIO(open(await (await download.value).path(), "rb").read()))
        assert "manifest.json" in archive.namelist() and "conversations.jsonl" in archive.namelist()
    finally:
        await runner.cleanup()


async def test_the_creator_schedules_the_deletion_of_the_organisation_and_cancels_it(stack, browsers, owner_db):
    org = await new_organisation(stack, owner_db, name=f"Doomed {uuid.uuid4().hex[:6]}")
    ctx = await browsers.new()
    owner = await sign_in(ctx, stack, org["owner"]["email"], org["owner"]["password"], path="/app/settings/data")
    await owner.get_by_role("button", name="Delete organisation").click()
    await owner.get_by_text("Type the organisation's name exactly").wait_for()
    await owner.get_by_label("to confirm").fill((await owner.locator(".danger-zone label").inner_text()).split("“")[1].split("”")[0])
    await owner.get_by_role("button", name="Delete organisation").click()
    await owner.get_by_role("dialog").get_by_role("button", name="Schedule deletion").click()
    await owner.get_by_text("will be deleted for good").wait_for()
    await owner.get_by_role("button", name="Cancel the deletion").click()
    await owner.get_by_role("button", name="Delete organisation").wait_for()
