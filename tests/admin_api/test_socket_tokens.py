"""Inbox socket tokens: short-lived member JWTs carrying role and token version."""

from admin_api import keys
from convot.db import scoped
from convot.tokens import TokenVerifier
from tests.admin_api.conftest import add_member, signed_in
from tests.admin_api.developer import owner_with_org


async def test_member_gets_a_short_lived_token_of_their_role_and_version(client_factory, app):
    owner, _, org = await owner_with_org(client_factory, app)
    agent, agent_id, _ = await signed_in(client_factory, app)
    await add_member(app, org, agent_id, "agent")
    answer = await agent.call("POST", f"/v1/orgs/{org}/socket-token")
    assert answer.status == 200
    verifier = TokenVerifier(app[keys.CONFIG])
    claims = verifier.verify(answer.body["token"])
    assert (claims.sub, claims.org, claims.role, claims.version) == (str(agent_id), str(org), "agent", 0)
    assert claims.exp == answer.body["expires_at"] and claims.exp - claims.iat <= app[keys.CONFIG].auth.agent_token_ttl
    assert answer.body["gateway_url"] == app[keys.CONFIG].admin_api.gateway_public_url
    async with scoped(app[keys.DB], org_id=org) as conn:
        await conn.execute("UPDATE members SET role = 'admin', token_version = token_version + 1 WHERE user_id = $1",
                           agent_id)
    again = verifier.verify((await agent.call("POST", f"/v1/orgs/{org}/socket-token")).body["token"])
    assert (again.role, again.version) == ("admin", 1)
    stranger, _, _ = await signed_in(client_factory, app)
    assert (await stranger.call("POST", f"/v1/orgs/{org}/socket-token")).code == "not_found"
