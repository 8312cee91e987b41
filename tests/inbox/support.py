"""Helpers of the inbox's browser tests: signing in, the widget on the demo page, screenshots."""

from __future__ import annotations

from tests.screenshots import save_screenshot  # noqa: F401  (the tests import it from here)


async def sign_in(context, stack, email: str, password: str, path: str = "/app/"):
    """A page of the inbox, signed in, with the live connection up."""
    page = await context.new_page()
    await page.goto(stack.api + path)
    await page.wait_for_selector("form input[name=email]")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", password)
    await page.click("form button[type=submit]")
    await page.wait_for_selector(".shell")
    await wait_connected(page)
    return page


async def wait_connected(page):
    """The inbox's socket is authenticated (no connection banner) and the list has loaded."""
    await page.wait_for_selector("html[data-connection=ready]", state="attached")


async def open_demo_shop(context, stack, name: str | None = None):
    """The demo shop page with the widget connected; returns (page, widget frame).

    ``name``: the shopper introduces themself (an unverified identify), so the inbox shows
    them by that name, which a test can find their conversation by."""
    page = await context.new_page()
    await page.goto(stack.api + "/demo")
    handle = await page.wait_for_selector("iframe[data-convot]", state="attached")
    frame = await handle.content_frame()
    await frame.wait_for_selector(".launcher", state="attached")
    await frame.wait_for_function("() => document.querySelector('.presence') && document.querySelector('.presence').textContent !== ''")
    if name:
        async with page.expect_response(lambda r: r.url.endswith("/v1/widget/session") and r.request.method == "POST"):
            await page.evaluate("(name) => window.Convot.identify({name})", name)
    return page, frame


async def widget_send(frame, text: str) -> None:
    if await frame.is_hidden(".panel"):
        await frame.click(".launcher")
        await frame.wait_for_selector(".panel", state="visible")
    await frame.fill("#cv-input", text)
    await frame.press("#cv-input", "Enter")


async def widget_bubbles(frame) -> list[str]:
    return await frame.eval_on_selector_all(".msg .bubble", "els => els.map(e => e.textContent)")


async def inbox_bubbles(page) -> list[str]:
    return await page.eval_on_selector_all(".log .msg .bubble .text, .log .msg .bubble .deleted-text",
                                           "els => els.map(e => e.textContent)")


async def open_conversation_of(page, name_part: str):
    """Click the list row whose contact name contains ``name_part``; the thread is loaded."""
    row = page.locator(".conv-link", has_text=name_part).first
    await row.click()
    await page.wait_for_selector(".thread .log")
    await page.wait_for_function("() => !document.querySelector('.log p.empty') || "
                                 "document.querySelector('.log p.empty').textContent !== 'Loading messages…'")


async def add_member(stack, owner_db, *, role: str, name: str, overrides: dict | None = None) -> tuple[str, str, str]:
    """A new verified user who is a member of the demo organisation: (user id, email, password)."""
    import secrets
    import uuid

    from admin_api.passwords import hash_password_sync

    user_id, email, password = uuid.uuid4(), f"{role}-{uuid.uuid4().hex[:10]}@example.com", "pw-" + secrets.token_urlsafe(12)
    org_id = uuid.UUID(stack.demo["org_id"])
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", str(org_id))
        await owner_db.execute("INSERT INTO users (id, email, password_hash, name, email_verified_at) VALUES ($1, $2, $3, $4, now())",
                               user_id, email, hash_password_sync(password, stack.config.auth.bcrypt_cost), name)
        await owner_db.execute("INSERT INTO members (org_id, user_id, role, overrides) VALUES ($1, $2, $3, $4)",
                               org_id, user_id, role, overrides or {})
    return str(user_id), email, password


async def demo_identity_secret(stack, owner_db) -> str:
    """The demo app's identity secret, decrypted as the admin API does."""
    import uuid

    from convot.crypto import Encryptor, row_aad

    org_id = uuid.UUID(stack.demo["org_id"])
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", str(org_id))
        row = await owner_db.fetchrow("SELECT id, identity_secret_enc FROM apps WHERE org_id = $1 AND public_key = $2",
                                      org_id, stack.demo["app_id"])
    return Encryptor.from_config(stack.config).decrypt(
        row["identity_secret_enc"], row_aad("apps", "identity_secret_enc", org_id, row["id"])).decode()


def hmac_hex(secret: str, value: str) -> str:
    import hashlib
    import hmac

    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()


async def new_organisation(stack, owner_db, name: str = "Other Org") -> dict:
    """An organisation of its own (tests that change organisation-wide settings use one, so
    they never affect the demo organisation): its owner's and an agent's credentials."""
    import secrets
    import uuid

    from admin_api.passwords import hash_password_sync

    org_id = uuid.uuid4()
    out = {"org_id": str(org_id)}
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", str(org_id))
        for role in ("owner", "agent"):
            user_id, email = uuid.uuid4(), f"{role}-{uuid.uuid4().hex[:10]}@example.com"
            password = "pw-" + secrets.token_urlsafe(12)
            await owner_db.execute(
                "INSERT INTO users (id, email, password_hash, name, email_verified_at) VALUES ($1, $2, $3, $4, now())",
                user_id, email, hash_password_sync(password, stack.config.auth.bcrypt_cost), f"{role.title()} of {name}")
            if role == "owner":
                await owner_db.execute("INSERT INTO organisations (id, name, super_owner_id) VALUES ($1, $2, $3)",
                                       org_id, name, user_id)
            await owner_db.execute("INSERT INTO members (org_id, user_id, role) VALUES ($1, $2, $3)", org_id, user_id, role)
            out[role] = {"id": str(user_id), "email": email, "password": password}
    return out


async def wait_for_mail(stack, to: str, subject_part: str, timeout: float = 15.0):
    """The newest mail to ``to`` caught by the development SMTP catch-all (<data.dir>/mail)."""
    import asyncio
    import email
    import email.policy
    import time

    folder = stack.config.data_dir / "mail"
    deadline = time.monotonic() + timeout
    while True:
        for path in sorted(folder.glob("*.eml"), reverse=True) if folder.exists() else ():
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if to in str(message["To"]) and subject_part in str(message["Subject"]):
                return message.get_body(preferencelist=("plain",)).get_content()
        if time.monotonic() > deadline:
            raise AssertionError(f"no mail to {to} about {subject_part!r}")
        await asyncio.sleep(0.1)


def link_in(text: str, path: str) -> str:
    import re

    match = re.search(r"(https?://\S+" + re.escape(path) + r"#token=[A-Za-z0-9_-]+)", text)
    assert match, f"no {path} link in the mail"
    return match.group(1)


def totp_code(secret_b32: str, offset: int = 0) -> str:
    """The authenticator code of ``secret_b32`` for the current step (+ offset steps)."""
    import base64
    import time

    from admin_api import totp

    secret = base64.b32decode(secret_b32.replace(" ", "").upper() + "=" * (-len(secret_b32.replace(" ", "")) % 8))
    return totp.hotp(secret, totp.step_at(time.time()) + offset)
