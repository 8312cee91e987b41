"""Development: the catch-all SMTP server runs inside the admin API and /dev/mail shows its mail."""

from aiohttp.test_utils import TestServer

from admin_api import keys
from admin_api.app import create_app, runs_catch_all
from convot.embedded import free_port
from tests.admin_api.conftest import make_org, new_email, signed_in, wait_for_mail


async def test_dev_mail_page_shows_caught_mail_escaped(client_factory, app):
    owner, owner_id, _ = await signed_in(client_factory, app)
    org_id = await make_org(app, owner_id, "<script>alert(1)</script>")
    email = new_email("devmail")
    await owner.call("POST", f"/v1/orgs/{org_id}/invites", {"email": email, "role": "agent"})
    await wait_for_mail(app, email, "invited")
    page = await owner.call("GET", "/dev/mail")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert email in page.body and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.body
    assert "<script>" not in page.body
    assert '<a href="http://127.0.0.1:8080/app/accept-invite#token=' in page.body
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")


async def test_catch_all_runs_only_in_development_with_a_loopback_relay(api_config):
    assert runs_catch_all(api_config)
    assert not runs_catch_all(api_config.replace(admin_api={"development": False}))
    assert not runs_catch_all(api_config.replace(smtp={"host": "smtp.example.com"}))
    assert not runs_catch_all(api_config.replace(smtp={"catch_all": "off"}))


async def test_production_has_no_dev_mail_route(api_config):
    app = create_app(api_config.replace(admin_api={"development": False}, smtp={"port": free_port()}))
    server = TestServer(app)
    await server.start_server()
    try:
        assert app[keys.CATCH_ALL] is None
        assert "/dev/mail" not in {r.resource.canonical for r in app.router.routes()}
        import aiohttp

        async with aiohttp.ClientSession() as http:
            async with http.get(server.make_url("/dev/mail")) as resp:
                assert resp.status == 404
    finally:
        await server.close()


async def test_a_busy_catch_all_port_does_not_stop_the_api(api_config):
    from convot.mail import CatchAllServer

    squatter = CatchAllServer(port=0)
    await squatter.start()
    app = create_app(api_config.replace(smtp={"port": squatter.port}, admin_api={"port": free_port()}))
    server = TestServer(app)
    try:
        await server.start_server()
        assert app[keys.CATCH_ALL] is None
        import aiohttp

        async with aiohttp.ClientSession() as http:
            async with http.get(server.make_url("/healthz")) as resp:
                assert resp.status == 200
            async with http.get(server.make_url("/dev/mail")) as resp:
                assert resp.status == 404
    finally:
        await server.close()
        await squatter.close()
