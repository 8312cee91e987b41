"""The request pipeline and the HTTP boundary: request ids, one error envelope for every
failure, strict bodies, and nothing internal in a 500."""

import logging

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from admin_api.app import create_app
from admin_api.routing import RouteTable, install
from admin_api.schemas import Schema, String
from convot.embedded import free_port
from tests.admin_api.conftest import LOG_LINES, signed_in


def assert_envelope(answer, status, code):
    assert answer.status == status, answer.body
    assert set(answer.body) == {"error"} and set(answer.body["error"]) == {"code", "message", "details"}
    assert answer.code == code


async def test_request_ids_are_echoed_or_generated(client):
    mine = await client.call("GET", "/healthz", headers={"X-Request-Id": "trace-123.abc"})
    assert mine.headers["X-Request-ID"] == "trace-123.abc"
    for hostile in ("bad id; x=1", "x" * 65, "<script>"):
        answer = await client.call("GET", "/healthz", headers={"X-Request-Id": hostile})
        assert answer.headers["X-Request-ID"] != hostile and len(answer.headers["X-Request-ID"]) == 16
    a, b = await client.call("GET", "/healthz"), await client.call("GET", "/healthz")
    assert a.headers["X-Request-ID"] != b.headers["X-Request-ID"]
    # the same id is on the request's log line
    rid = a.headers["X-Request-ID"]
    assert any(f'"request_id":"{rid}"' in line and '"msg":"request"' in line for line in LOG_LINES)


async def test_unknown_routes_and_methods_use_the_envelope(client):
    assert_envelope(await client.call("GET", "/v1/nothing-here"), 404, "not_found")
    wrong = await client.call("PUT", "/v1/auth/login", {"x": 1})
    assert_envelope(wrong, 405, "method_not_allowed")
    assert "POST" in wrong.headers["Allow"]


async def test_bodies_are_strict(client):
    login = "/v1/auth/login"
    assert_envelope(await client.call("POST", login, raw=b'{"email": "a@example.com", "password": "x"}'), 415,
                    "unsupported_media_type")
    assert_envelope(await client.call("POST", login, raw=b"{not json", headers={"Content-Type": "application/json"}),
                    400, "bad_request")
    unknown = await client.call("POST", login, {"email": "a@example.com", "password": "x", "admin": True})
    assert_envelope(unknown, 422, "unprocessable_entity")
    assert unknown.body["error"]["details"] == {"field": "admin", "reason": "is not a known field"}
    assert_envelope(await client.call("POST", login, raw=b"[1]", headers={"Content-Type": "application/json"}),
                    422, "unprocessable_entity")
    big = b'{"email": "' + b"a" * 70000 + b'", "password": "x"}'
    assert_envelope(await client.call("POST", login, raw=big, headers={"Content-Type": "application/json"}),
                    413, "payload_too_large")


async def test_a_route_without_a_body_refuses_one(client_factory, app):
    c, _, _ = await signed_in(client_factory, app)
    answer = await c.call("POST", "/v1/me/sessions/revoke-others", {"surprise": 1})
    assert_envelope(answer, 422, "unprocessable_entity")


async def test_malformed_path_parameters_answer_404(client_factory, app):
    c, _, _ = await signed_in(client_factory, app)
    assert_envelope(await c.call("GET", "/v1/orgs/1%20OR%201=1/members"), 404, "not_found")


async def test_unexpected_errors_answer_500_without_internals(api_config, caplog):
    class Out(Schema):
        x = String()

    table = RouteTable("test")

    @table.route("GET", "/v1/test/boom", permission="public", response=Out)
    async def boom(call):
        raise RuntimeError("internal detail: password=hunter2")

    app = create_app(api_config.replace(smtp={"port": free_port()}))
    install(app, [table])
    server = TestServer(app)
    await server.start_server()
    try:
        with caplog.at_level(logging.INFO):
            async with aiohttp.ClientSession() as http:
                async with http.get(server.make_url("/v1/test/boom")) as resp:
                    body = await resp.json()
                    assert resp.status == 500
                    rid = resp.headers["X-Request-ID"]
        assert body == {"error": {"code": "internal_error", "message": "Something went wrong on our side.", "details": {}}}
        logged = [r for r in caplog.records if r.getMessage() == "unhandled error"]
        assert logged and logged[0].__dict__["error"] == "RuntimeError"
        assert all("hunter2" not in (r.getMessage() + repr(r.__dict__)) for r in caplog.records)
        assert "test_pipeline.py" in logged[0].__dict__["trace"]
        assert rid
    finally:
        await server.close()


async def test_a_handler_returning_the_wrong_schema_is_a_500(api_config):
    class Out(Schema):
        x = String()

    class Other(Schema):
        y = String()

    table = RouteTable("test")

    @table.route("GET", "/v1/test/wrong", permission="public", response=Out)
    async def wrong(call):
        return Other(y="leak")

    app = create_app(api_config.replace(smtp={"port": free_port()}))
    install(app, [table])
    server = TestServer(app)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(server.make_url("/v1/test/wrong")) as resp:
                assert resp.status == 500 and "leak" not in await resp.text()
    finally:
        await server.close()


@pytest.mark.parametrize("query", ["?limit=abc", "?limit=1&limit=2"])
async def test_query_strings_are_validated(client_factory, app, query):
    c, user_id, _ = await signed_in(client_factory, app)
    answer = await c.call("GET", f"/v1/me/auth-events{query}")
    assert_envelope(answer, 422, "unprocessable_entity")
    assert answer.body["error"]["details"]["field"] == "limit"


async def test_every_api_is_rate_limited_per_session_and_per_ip(api_config):
    from tests.admin_api.conftest import PASSWORD, fresh_ip, make_user

    app = create_app(api_config.replace(smtp={"port": free_port()}, admin_api={"ip_rate_limit": 5}))
    server = TestServer(app)
    await server.start_server()
    try:
        _, email, _ = await make_user(app)
        ip = {"X-Forwarded-For": fresh_ip()}
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), headers=ip) as http:
            statuses = []
            for _ in range(5):
                async with http.get(server.make_url("/.well-known/security.txt")) as resp:
                    statuses.append(resp.status)
            async with http.post(server.make_url("/v1/auth/login"), json={"email": email, "password": PASSWORD}) as resp:
                assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
            async with http.get(server.make_url("/healthz")) as resp:
                assert resp.status == 200  # monitoring is never throttled
            assert statuses == [200] * 5
        # a signed-in session has its own budget
        app2 = create_app(api_config.replace(smtp={"port": free_port()}, admin_api={"session_rate_limit": 3}))
        server2 = TestServer(app2)
        await server2.start_server()
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                             headers={"X-Forwarded-For": fresh_ip()}) as http:
                async with http.post(server2.make_url("/v1/auth/login"), json={"email": email, "password": PASSWORD}) as resp:
                    assert resp.status == 200
                answers = []
                for _ in range(4):
                    async with http.get(server2.make_url("/v1/me")) as resp:
                        answers.append(resp.status)
                assert answers == [200, 200, 200, 429]
        finally:
            await server2.close()
    finally:
        await server.close()
