"""Tenant isolation, generated from the route table.

Every route is called with organisation B's credentials against organisation A's resources:
a route with a path parameter must answer 404 (never 403, never data) and change nothing;
a GET without parameters must not show anything of A.  A route this test cannot classify --
a path parameter without a sample below, or a state-changing route without parameters that is
not listed in SELF_SCOPED -- fails the suite, so every new route gets covered.
"""

import hashlib
import uuid
from dataclasses import dataclass

import pytest

from admin_api import keys
from admin_api.openapi import openapi_path
from convot.db import scoped
from tests.admin_api.conftest import add_member, make_org, new_email, signed_in

# State-changing routes without path parameters: they act on the caller's own account, or are
# public and name their object by a secret token, so there is nothing of A to address.
SELF_SCOPED = {
    ("POST", "/v1/auth/signup"): "public: creates an account",
    ("POST", "/v1/auth/verify-email"): "public: a secret token",
    ("POST", "/v1/auth/login"): "public: credentials",
    ("POST", "/v1/auth/logout"): "the caller's session",
    ("POST", "/v1/auth/reauth"): "the caller's session",
    ("POST", "/v1/auth/mfa"): "the caller's session",
    ("POST", "/v1/auth/password/change"): "the caller's account",
    ("POST", "/v1/auth/password/reset-request"): "public: mails the address's owner",
    ("POST", "/v1/auth/password/reset"): "public: a secret token",
    ("PATCH", "/v1/me"): "the caller's account",
    ("POST", "/v1/me/email"): "the caller's account",
    ("POST", "/v1/me/email/confirm"): "the caller's account + a secret token",
    ("POST", "/v1/me/sessions/revoke-others"): "the caller's sessions",
    ("POST", "/v1/me/mfa/totp/setup"): "the caller's account",
    ("POST", "/v1/me/mfa/totp/enable"): "the caller's account",
    ("POST", "/v1/me/mfa/totp/disable"): "the caller's account",
    ("POST", "/v1/me/mfa/recovery-codes"): "the caller's account",
    ("POST", "/v1/orgs"): "creates the caller's own organisation",
    ("POST", "/v1/invites/inspect"): "public: a secret token",
    ("POST", "/v1/invites/accept"): "a secret token, for the caller's own address",
}
# GET routes that may show other tenants' data by design (development only, loopback only).
DEVELOPMENT_ONLY = {("GET", "/dev/mail")}


@dataclass
class TenantA:
    org_id: uuid.UUID
    owner_id: uuid.UUID
    agent_id: uuid.UUID
    invite_id: uuid.UUID
    session_id: str
    owner_email: str
    agent_email: str

    def secrets_of_a(self) -> list[str]:
        return [str(self.org_id), str(self.owner_id), str(self.agent_id), str(self.invite_id), self.session_id,
                self.owner_email, self.agent_email]


def samples(a: TenantA) -> dict[str, str]:
    """A's value for every path parameter name of the API.  A new parameter needs a line here."""
    return {"org_id": str(a.org_id), "user_id": str(a.agent_id), "invite_id": str(a.invite_id),
            "session_id": a.session_id}


async def tenant_a(client_factory, app):
    owner, owner_id, _ = await signed_in(client_factory, app)
    org_id = await make_org(app, owner_id, "Tenant A")
    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org_id, agent_id, "agent")
    invite = await owner.call("POST", f"/v1/orgs/{org_id}/invites", {"email": new_email("a-invitee"), "role": "agent"})
    session_id = hashlib.sha256(owner.session_cookie().encode()).hexdigest()
    return TenantA(org_id, owner_id, agent_id, uuid.UUID(invite.body["id"]), session_id, owner.email, agent.email), owner


async def snapshot(app, a: TenantA) -> dict:
    async with scoped(app[keys.DB], org_id=a.org_id) as conn:
        return {
            "org": dict(await conn.fetchrow("SELECT name, require_mfa, deletion_scheduled_at FROM organisations WHERE id = $1", a.org_id)),
            "members": sorted(tuple(r) for r in await conn.fetch("SELECT user_id, role, overrides::text, token_version FROM members WHERE org_id = $1", a.org_id)),
            "invites": sorted(tuple(r) for r in await conn.fetch("SELECT id, accepted_at, revoked_at FROM invites WHERE org_id = $1", a.org_id)),
            "session": await conn.fetchval("SELECT revoked_at FROM user_sessions WHERE id = $1", a.session_id),
        }


def fill(path: str, values: dict[str, str]) -> str:
    out = openapi_path(path)
    for name, value in values.items():
        out = out.replace("{" + name + "}", value)
    return out


async def test_every_route_refuses_organisation_b_on_organisation_a(client_factory, app):
    a, a_owner = await tenant_a(client_factory, app)
    b, b_owner_id, _ = await signed_in(client_factory, app)
    b_org = await make_org(app, b_owner_id, "Tenant B")
    before = await snapshot(app, a)
    a_values = samples(a)

    uncovered, leaks, checked = [], [], 0
    for route in app[keys.ROUTES]:
        key = (route.method, openapi_path(route.path))
        params = route.path_params
        body = route.body.example() if route.body is not None else None
        if params:
            missing = [p for p in params if p not in a_values]
            if missing:
                uncovered.append(f"{key}: no sample of organisation A for path parameter(s) {missing}")
                continue
            # 1. A's identifiers with B's credentials
            answer = await b.call(route.method, fill(route.path, a_values), body)
            checked += 1
            if answer.status != 404 or answer.code != "not_found":
                leaks.append(f"{key} with A's ids answered {answer.status} {answer.body}")
            # 2. B's own organisation, but A's other resources
            if "org_id" in params and len(params) > 1:
                mixed = await b.call(route.method, fill(route.path, {**a_values, "org_id": str(b_org)}), body)
                checked += 1
                if mixed.status != 404:
                    leaks.append(f"{key} with B's org and A's resource answered {mixed.status} {mixed.body}")
        elif route.method == "GET":
            if key in DEVELOPMENT_ONLY:
                continue
            answer = await b.call("GET", route.path)
            checked += 1
            text = str(answer.body)
            shown = [s for s in a.secrets_of_a() if s in text]
            if shown:
                leaks.append(f"{key} shows organisation A's {shown}")
        elif key not in SELF_SCOPED:
            uncovered.append(f"{key}: state-changing route without path parameters: add it to SELF_SCOPED "
                             "with the reason it cannot reach another organisation, or give it a path parameter")
    assert uncovered == [], "\n".join(uncovered)
    assert leaks == [], "\n".join(leaks)
    assert checked >= 30, checked
    assert await snapshot(app, a) == before, "organisation A changed"
    assert (await a_owner.call("GET", f"/v1/orgs/{a.org_id}/members")).status == 200


async def test_a_new_route_without_a_sample_fails_the_check(client_factory, app):
    """The check above reports a route whose path parameter it cannot fill."""
    from admin_api.routing import Route

    dummy = Route(method="GET", path="/v1/orgs/{org_id}/widgets/{widget_id}", handler=lambda call: None,
                  permission="org.read", tag="dummy", status=204)
    a = TenantA(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), "0" * 64, "a@example.com", "b@example.com")
    assert [p for p in dummy.path_params if p not in samples(a)] == ["widget_id"]


@pytest.mark.parametrize("path", ["/v1/orgs/not-a-uuid", "/v1/orgs/00000000-0000-0000-0000-000000000000/members"])
async def test_malformed_or_unknown_organisations_answer_404(client_factory, app, path):
    b, _, _ = await signed_in(client_factory, app)
    answer = await b.call("GET", path)
    assert (answer.status, answer.code) == (404, "not_found")
