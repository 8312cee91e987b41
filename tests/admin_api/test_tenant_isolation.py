"""Tenant isolation, generated from the route table.

Every route is called with organisation B's credentials against organisation A's resources:
a route with a path parameter must answer 404 (never 403, never data) and change nothing;
a GET without parameters must not show anything of A.  A route this test cannot classify --
a path parameter without a sample in ``seed_a`` / ``NOT_TENANT_PARAMS``, or a state-changing
route without parameters that is not listed in SELF_SCOPED -- fails the suite, so every new
route gets covered.
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
    ("POST", "/v1/billing/stripe/webhook"): "public: Stripe-signed raw body; the event names its customer",
    ("POST", "/v1/widget/session"): "public: names its app by the public key, answers only that app's data",
}
# GET routes that may show other tenants' data by design (development only, loopback only).
DEVELOPMENT_ONLY = {("GET", "/dev/mail")}
# Path parameters of public routes that name no tenant resource (static files), with a sample.
NOT_TENANT_PARAMS = {"path": "index.html", "name": "loader.js"}


@dataclass
class TenantA:
    org_id: uuid.UUID
    owner_id: uuid.UUID
    agent_id: uuid.UUID
    invite_id: uuid.UUID
    session_id: str
    owner_email: str
    agent_email: str
    resources: dict

    def secrets_of_a(self) -> list[str]:
        return [str(self.org_id), str(self.owner_id), str(self.agent_id), str(self.invite_id), self.session_id,
                self.owner_email, self.agent_email, *[v for k, v in self.resources.items() if k != "seq"]]


def samples(a: TenantA) -> dict[str, str]:
    """A's value for every path parameter name of the API.  A new parameter needs a sample here
    (and its row in ``seed_a``)."""
    return {"org_id": str(a.org_id), "user_id": str(a.agent_id), "invite_id": str(a.invite_id),
            "session_id": a.session_id, **a.resources}


async def seed_a(app, org_id: uuid.UUID, owner_id: uuid.UUID) -> dict[str, str]:
    """One row of every other tenant resource kind in organisation A, written under A's scope."""
    from convot.crypto import row_aad

    enc = app[keys.ENCRYPTOR]
    app_id, hook_id = uuid.uuid4(), uuid.uuid4()
    key_id = uuid.uuid4().hex[:16]
    async with scoped(app[keys.DB], org_id=org_id) as conn:
        await conn.execute(
            "INSERT INTO apps (id, org_id, public_key, name, identity_secret_enc) VALUES ($1, $2, $3, 'A app', $4)",
            app_id, org_id, f"app_{uuid.uuid4().hex[:20]}",
            enc.encrypt(b"0" * 64, row_aad("apps", "identity_secret_enc", org_id, app_id)))
        contact_id = await conn.fetchval(
            "INSERT INTO contacts (org_id, email, name) VALUES ($1, $2, 'A contact') RETURNING id",
            org_id, new_email("a-contact"))
        conversation_id = await conn.fetchval(
            "INSERT INTO conversations (org_id, app_id, contact_id, last_seq) VALUES ($1, $2, $3, 1) RETURNING id",
            org_id, app_id, contact_id)
        await conn.execute(
            "INSERT INTO messages (org_id, conversation_id, seq, id, type, author_kind, body, created_at) "
            "VALUES ($1, $2, 1, $3, 'incoming', 'contact', 'a private message of A', now())",
            org_id, conversation_id, uuid.uuid4().hex)
        await conn.execute(
            "INSERT INTO webhooks (id, org_id, url, secret_enc, events) VALUES ($1, $2, 'https://a.example/hook', $3, "
            "'{message.sent}')", hook_id, org_id, enc.encrypt(b"s" * 32, row_aad("webhooks", "secret_enc", org_id, hook_id)))
        delivery_id = await conn.fetchval(
            "INSERT INTO webhook_deliveries (org_id, webhook_id, event, event_id, payload) "
            "VALUES ($1, $2, 'message.sent', $3, '{}') RETURNING id", org_id, hook_id, uuid.uuid4().hex)
        export_id = await conn.fetchval(
            "INSERT INTO exports (org_id, requested_by) VALUES ($1, $2) RETURNING id", org_id, owner_id)
        await conn.execute(
            "INSERT INTO api_keys (id, org_id, name, secret_hash, scopes) VALUES ($1, $2, 'A key', $3, "
            "'{conversations:read}')", key_id, org_id, "0" * 64)
        rule_id = await conn.fetchval(
            "INSERT INTO assignment_rules (org_id, position, name, actions) "
            "VALUES ($1, 1, 'A rule', '[{\"type\": \"skip_assignment\"}]') RETURNING id", org_id)
        reminder_id = await conn.fetchval(
            "INSERT INTO reminders (org_id, conversation_id, user_id, remind_at, note) "
            "VALUES ($1, $2, $3, now() + interval '1 day', 'A reminder') RETURNING id", org_id, conversation_id, owner_id)
    return {"app_id": str(app_id), "contact_id": str(contact_id), "conversation_id": str(conversation_id),
            "seq": "1", "webhook_id": str(hook_id), "delivery_id": str(delivery_id), "export_id": str(export_id),
            "key_id": key_id, "rule_id": str(rule_id), "reminder_id": str(reminder_id)}


async def tenant_a(client_factory, app):
    owner, owner_id, _ = await signed_in(client_factory, app)
    org_id = await make_org(app, owner_id, "Tenant A")
    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org_id, agent_id, "agent")
    invite = await owner.call("POST", f"/v1/orgs/{org_id}/invites", {"email": new_email("a-invitee"), "role": "agent"})
    session_id = hashlib.sha256(owner.session_cookie().encode()).hexdigest()
    resources = await seed_a(app, org_id, owner_id)
    return TenantA(org_id, owner_id, agent_id, uuid.UUID(invite.body["id"]), session_id, owner.email, agent.email,
                   resources), owner


async def snapshot(app, a: TenantA) -> dict:
    tables = ("apps", "contacts", "conversations", "messages", "webhooks", "webhook_deliveries", "exports", "api_keys",
              "members", "invites", "organisations", "assignment_rules", "reminders", "notifications")
    async with scoped(app[keys.DB], org_id=a.org_id) as conn:
        state = {}
        for table in tables:
            rows = await conn.fetch(f'SELECT to_jsonb(t)::text AS row FROM "{table}" t WHERE org_id = $1', a.org_id)
            state[table] = sorted(r["row"] for r in rows)
        state["session"] = await conn.fetchval("SELECT revoked_at FROM user_sessions WHERE id = $1", a.session_id)
        return state


def query_for(route) -> str:
    if route.query is None:
        return ""
    from urllib.parse import urlencode

    example = {k: v for k, v in route.query.example().items() if route.query.__fields__[k].required}
    return "?" + urlencode(example) if example else ""


def fill(path: str, values: dict[str, str]) -> str:
    out = openapi_path(path)
    for name, value in values.items():
        out = out.replace("{" + name + "}", value)
    return out


async def walk(routes, a: TenantA, b, b_org: uuid.UUID) -> tuple[list[str], list[str], int]:
    """Call every route as B against A; answer (uncovered routes, leaks, calls made)."""
    a_values = samples(a)
    uncovered, leaks, checked = [], [], 0
    for route in routes:
        key = (route.method, openapi_path(route.path))
        params = route.path_params
        body = route.body.example() if route.body is not None else None
        if params and route.permission == "public" and all(p in NOT_TENANT_PARAMS for p in params):
            answer = await b.call(route.method, fill(route.path, NOT_TENANT_PARAMS) + query_for(route), body)
            checked += 1
            shown = [x for x in a.secrets_of_a() if x in str(answer.body)]
            if shown:
                leaks.append(f"{key} shows organisation A's {shown}")
        elif params:
            missing = [p for p in params if p not in a_values]
            if missing:
                uncovered.append(f"{key}: no sample of organisation A for path parameter(s) {missing}")
                continue
            # 1. A's identifiers with B's credentials
            answer = await b.call(route.method, fill(route.path, a_values) + query_for(route), body)
            checked += 1
            if answer.status != 404 or answer.code != "not_found":
                leaks.append(f"{key} with A's ids answered {answer.status} {answer.body}")
            # 2. B's own organisation, but A's other resources
            if "org_id" in params and len(params) > 1:
                mixed = await b.call(route.method, fill(route.path, {**a_values, "org_id": str(b_org)}) + query_for(route),
                                     body)
                checked += 1
                if mixed.status != 404:
                    leaks.append(f"{key} with B's org and A's resource answered {mixed.status} {mixed.body}")
        elif route.method == "GET":
            if key in DEVELOPMENT_ONLY:
                continue
            answer = await b.call("GET", route.path + query_for(route))
            checked += 1
            shown = [x for x in a.secrets_of_a() if x in str(answer.body)]
            if shown:
                leaks.append(f"{key} shows organisation A's {shown}")
        elif key not in SELF_SCOPED:
            uncovered.append(f"{key}: state-changing route without path parameters: add it to SELF_SCOPED "
                             "with the reason it cannot reach another organisation, or give it a path parameter")
    return uncovered, leaks, checked


async def two_tenants(client_factory, app):
    a, a_owner = await tenant_a(client_factory, app)
    b, b_owner_id, _ = await signed_in(client_factory, app)
    b_org = await make_org(app, b_owner_id, "Tenant B")
    return a, a_owner, b, b_org


async def test_every_route_refuses_organisation_b_on_organisation_a(client_factory, app):
    a, a_owner, b, b_org = await two_tenants(client_factory, app)
    before = await snapshot(app, a)
    uncovered, leaks, checked = await walk(app[keys.ROUTES], a, b, b_org)
    assert uncovered == [], "\n".join(uncovered)
    assert leaks == [], "\n".join(leaks)
    assert checked >= 30, checked
    assert await snapshot(app, a) == before, "organisation A changed"
    assert (await a_owner.call("GET", f"/v1/orgs/{a.org_id}/members")).status == 200


async def test_a_new_route_without_coverage_fails_the_check():
    """A route whose path parameter has no sample, or a parameterless state-changing route that
    nobody classified, is reported (the walker makes no call for them)."""
    from admin_api.routing import Route

    new_param = Route(method="GET", path="/v1/orgs/{org_id}/widgets/{widget_id}", handler=lambda call: None,
                      permission="org.read", tag="dummy", status=204)
    unclassified = Route(method="POST", path="/v1/something-new", handler=lambda call: None,
                         permission="session", tag="dummy", status=204)
    a = TenantA(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), "0" * 64, "a@example.com", "b@example.com", {})
    uncovered, leaks, checked = await walk([new_param, unclassified], a, b=None, b_org=uuid.uuid4())
    assert len(uncovered) == 2 and "widget_id" in uncovered[0] and "SELF_SCOPED" in uncovered[1]
    assert (leaks, checked) == ([], 0)


async def test_the_walker_catches_a_broken_membership_check(client_factory, app, monkeypatch):
    """Proof the check can fail: with the membership lookup faked, B reaches A's data and the
    walker reports it."""
    from admin_api import pipeline
    from admin_api.principal import Membership

    a, _, b, b_org = await two_tenants(client_factory, app)

    async def everyone_is_owner(pool, org_id, user_id):
        return Membership(org_id, user_id, "owner", {}, 0, False, False)

    monkeypatch.setattr(pipeline, "load_membership", everyone_is_owner)
    routes = [r for r in app[keys.ROUTES] if r.method == "GET" and r.path in
              ("/v1/orgs/{org_id}/members", "/v1/orgs/{org_id}/members/{user_id}", "/v1/orgs/{org_id}/invites")]
    _, leaks, _ = await walk(routes, a, b, b_org)
    assert len(leaks) == 3, leaks


@pytest.mark.parametrize("path", ["/v1/orgs/not-a-uuid", "/v1/orgs/00000000-0000-0000-0000-000000000000/members"])
async def test_malformed_or_unknown_organisations_answer_404(client_factory, app, path):
    b, _, _ = await signed_in(client_factory, app)
    answer = await b.call("GET", path)
    assert (answer.status, answer.code) == (404, "not_found")
