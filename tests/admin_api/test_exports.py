"""Exports through the API: owners only, background build, expiring signed download link, audit."""

import io
import time
import uuid
import zipfile
from urllib.parse import parse_qs, urlencode, urlsplit

from admin_api import keys
from admin_api.exports import LinkSigner
from convot.db import scoped
from engine import export
from tests.admin_api.conftest import add_member, signed_in
from tests.admin_api.developer import owner_with_org


async def _download(client, url):
    parts = urlsplit(url)
    async with client.http.get(parts.path + "?" + parts.query) as resp:
        return resp.status, await resp.read(), dict(resp.headers)


async def test_owner_exports_and_downloads_through_a_signed_link(client_factory, app):
    owner, owner_id, org = await owner_with_org(client_factory, app)
    admin, admin_id, _ = await signed_in(client_factory, app)
    await add_member(app, org, admin_id, "admin")
    assert (await admin.call("POST", f"/v1/orgs/{org}/exports")).code == "forbidden"
    contact = await owner.call("POST", f"/v1/orgs/{org}/contacts", {"email": "exported@example.com"})

    started = await owner.call("POST", f"/v1/orgs/{org}/exports")
    assert started.status == 202 and started.body["status"] == "pending" and started.body["available"] == 0
    export_id = started.body["id"]
    assert (await owner.call("POST", f"/v1/orgs/{org}/exports")).code == "conflict"
    assert (await owner.call("POST", f"/v1/orgs/{org}/exports/{export_id}/link")).code == "conflict"

    assert await export.run_one(app[keys.CONFIG], app[keys.DB], org) == uuid.UUID(export_id)
    done = await owner.call("GET", f"/v1/orgs/{org}/exports/{export_id}")
    assert done.body["status"] == "done" and done.body["available"] == 1 and done.body["counts"]["contacts"] == 1
    link = await owner.call("POST", f"/v1/orgs/{org}/exports/{export_id}/link")
    assert link.status == 200 and link.body["expires_at"] <= int(time.time()) + 900
    stranger = await client_factory()   # the link is the credential
    status, data, headers = await _download(stranger, link.body["url"])
    assert status == 200 and headers["Content-Type"] == "application/zip"
    assert "attachment" in headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read("contacts.jsonl").decode().count(contact.body["contact"]["id"]) == 1
        assert str(org) in zf.read("manifest.json").decode()

    # tampered, foreign or expired links answer 404
    query = {k: v[0] for k, v in parse_qs(urlsplit(link.body["url"]).query).items()}
    path = urlsplit(link.body["url"]).path
    signer = LinkSigner.from_config(app[keys.CONFIG])
    kid, old_sig = signer.sign(org, export_id, int(time.time()) - 1)
    for changed in ({"signature": "0" * 64}, {"org_id": str(uuid.uuid4())}, {"expires": str(int(query["expires"]) + 60)},
                    {"expires": str(int(time.time()) - 1), "signature": old_sig}, {"kid": "nope"},
                    {"signature": "é" * 64}, {"expires": "soon"}):
        answer = await stranger.call("GET", path + "?" + urlencode({**query, **changed}))
        assert (answer.status, answer.code) == (404, "not_found"), changed
    assert (await stranger.call("GET", path)).code == "not_found"
    async with scoped(app[keys.DB], org_id=org) as conn:
        actions = [r[0] for r in await conn.fetch("SELECT action FROM audit_log WHERE org_id = $1 AND "
                                                  "target_id = $2 ORDER BY id", org, export_id)]
    assert actions == ["export.requested", "export.completed", "export.link_created", "export.downloaded"]


async def test_an_expired_archive_cannot_be_linked_or_downloaded(client_factory, app):
    owner, _, org = await owner_with_org(client_factory, app)
    export_id = (await owner.call("POST", f"/v1/orgs/{org}/exports")).body["id"]
    await export.run_one(app[keys.CONFIG], app[keys.DB], org)
    link = await owner.call("POST", f"/v1/orgs/{org}/exports/{export_id}/link")
    async with scoped(app[keys.DB], org_id=org) as conn:
        await conn.execute("UPDATE exports SET expires_at = now() - interval '1 second' WHERE id = $1",
                           uuid.UUID(export_id))
    await export.expire_archives(app[keys.DB], org)
    status, _, _ = await _download(await client_factory(), link.body["url"])
    assert status == 404
    assert (await owner.call("POST", f"/v1/orgs/{org}/exports/{export_id}/link")).code == "conflict"
    listed = await owner.call("GET", f"/v1/orgs/{org}/exports")
    assert listed.body["items"][0]["available"] == 0
