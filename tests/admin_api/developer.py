"""Helpers of the issue-5 tests (apps, API keys, REST API, webhooks, exports): set-up through the
API itself, so every test also exercises the routes it relies on."""

from __future__ import annotations

import hashlib
import hmac

from tests.admin_api.conftest import Client, make_org, remember, signed_in

ALL_SCOPES = ["conversations:read", "conversations:write", "messages:read", "messages:write", "contacts:read",
              "contacts:write", "webhooks:read", "webhooks:write"]


def user_hash(secret: str, value: str) -> str:
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()


async def stale_reauth(app, user_id) -> None:
    """Make the user's sessions' last re-authentication old (sign-in counts as one)."""
    from admin_api import keys

    async with app[keys.DB].acquire() as conn:
        await conn.execute("UPDATE user_sessions SET reauth_at = NULL WHERE user_id = $1", user_id)


async def owner_with_org(client_factory, app, name: str = "Dev Org"):
    owner, owner_id, _ = await signed_in(client_factory, app)
    org_id = await make_org(app, owner_id, name)
    return owner, owner_id, org_id


async def create_app(owner: Client, org_id, **fields) -> tuple[dict, str]:
    """(app, identity secret)."""
    body = {"name": "Northwind Support", "allowed_origins": ["https://shop.example.com"], **fields}
    answer = await owner.call("POST", f"/v1/orgs/{org_id}/apps", body)
    assert answer.status == 201, answer.body
    remember(answer.body["identity_secret"])
    return answer.body["app"], answer.body["identity_secret"]


async def api_client(client_factory, owner: Client, org_id, scopes=ALL_SCOPES, name: str = "integration") -> Client:
    """A fresh client (no cookies) that authenticates with a new API key of the organisation."""
    assert (await owner.reauth()).status == 200
    answer = await owner.call("POST", f"/v1/orgs/{org_id}/api-keys", {"name": name, "scopes": scopes})
    assert answer.status == 201, answer.body
    key = answer.body["key"]
    remember(key, key.split(":", 1)[1])
    c = await client_factory()
    c.extra_headers["Authorization"] = f"Bearer {key}"
    c.key_id = answer.body["api_key"]["id"]
    return c
