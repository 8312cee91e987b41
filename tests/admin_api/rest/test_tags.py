"""REST tags: normalised names, created once, listed by name."""

from tests.admin_api.developer import api_client, owner_with_org


async def test_tags_are_normalised_and_unique(client_factory, app):
    owner, _, org = await owner_with_org(client_factory, app)
    api = await api_client(client_factory, owner, org, ["conversations:read", "conversations:write"])
    created = await api.call("POST", f"/v1/orgs/{org}/tags", {"name": "  VIP Customer!! "})
    assert created.status == 201 and created.body["name"] == "vip-customer"
    again = await api.call("POST", f"/v1/orgs/{org}/tags", {"name": "vip customer"})
    assert again.code == "conflict"
    await api.call("POST", f"/v1/orgs/{org}/tags", {"name": "Billing"})
    assert [t["name"] for t in (await api.call("GET", f"/v1/orgs/{org}/tags")).body["items"]] == ["billing",
                                                                                                 "vip-customer"]
    bad = await api.call("POST", f"/v1/orgs/{org}/tags", {"name": "!!!"})
    assert bad.code == "unprocessable_entity" and bad.body["error"]["details"]["field"] == "name"
    reader = await api_client(client_factory, owner, org, ["conversations:read"])
    assert (await reader.call("POST", f"/v1/orgs/{org}/tags", {"name": "x"})).code == "forbidden"
