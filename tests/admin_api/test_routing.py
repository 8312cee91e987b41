"""The route-declaration layer: every route declares a permission, and the router, the
pipeline and the OpenAPI document are built from the same declarations."""

import pytest
from aiohttp import web

from admin_api.app import create_app
from admin_api.keys import ROUTES
from admin_api.openapi import openapi_path
from admin_api.routing import RouteTable, declared_route, undeclared_routes
from admin_api.schemas import Schema, String


def router_routes(app):
    out = set()
    for r in app.router.routes():
        info = r.resource.get_info()
        out.add((r.method, openapi_path(info.get("path") or info.get("formatter"))))
    return out


def test_every_route_of_the_application_is_declared(api_config):
    app = create_app(api_config)
    assert undeclared_routes(app) == []
    for r in app.router.routes():
        route = declared_route(r.handler)
        assert route.permission, f"{r.method} {route.path} declares no permission"


def test_an_undeclared_route_is_caught(api_config):
    app = create_app(api_config)

    async def sneaky(request):
        return web.json_response({})

    app.router.add_get("/v1/sneaky", sneaky)
    assert sorted(undeclared_routes(app)) == ["GET /v1/sneaky", "HEAD /v1/sneaky"]


def test_a_declaration_without_permission_is_refused():
    table = RouteTable("t")

    class Out(Schema):
        x = String()

    with pytest.raises(TypeError):
        table.route("GET", "/v1/x", response=Out)  # permission is a required keyword
    with pytest.raises(ValueError):
        table.route("GET", "/v1/x", permission="", response=Out)
    with pytest.raises(ValueError):
        table.route("GET", "/v1/x", permission="everything", response=Out)
    with pytest.raises(ValueError):
        table.route("GET", "/v1/x", permission="team.manage", response=Out)  # member permission without {org_id}
    with pytest.raises(ValueError):
        table.route("GET", "/v1/orgs/{org_id}/x", permission="public", response=Out)
    with pytest.raises(ValueError):
        table.route("GET", "/v1/x", permission="public")  # JSON route without a response schema
    with pytest.raises(ValueError):
        table.route("POST", "/v1/x", permission="public", reauth=True, response=Out)


def test_a_route_declared_twice_is_refused(api_config):
    from admin_api.routing import install

    table = RouteTable("t")

    class Out(Schema):
        x = String()

    async def one(call):
        return Out(x="1")

    table.route("GET", "/v1/twice", permission="public", response=Out)(one)
    table.route("GET", "/v1/twice", permission="session", response=Out)(one)
    with pytest.raises(ValueError):
        install(web.Application(), [table])


async def test_openapi_lists_exactly_the_routes_with_their_schemas(client, app):
    answer = await client.call("GET", "/v1/openapi.json")
    assert answer.status == 200
    doc = answer.body
    assert doc["openapi"] == "3.1.0"
    documented = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    assert documented == router_routes(app)

    schemas = doc["components"]["schemas"]

    def refs(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    yield v
                else:
                    yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref

    by_key = {(r.method, openapi_path(r.path)): r for r in app[ROUTES]}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            route = by_key[(method.upper(), path)]
            assert op["x-permission"] == route.permission
            success = op["responses"][str(route.status)]
            if route.response is not None:
                assert success["content"]["application/json"]["schema"]["$ref"].endswith("/" + route.response.__name__)
            if route.body is not None:
                assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(route.body.__name__)
            else:
                assert "requestBody" not in op
            assert {p["name"] for p in op.get("parameters", []) if p["in"] == "path"} == set(route.path_params)
            for status, entry in op["responses"].items():
                if int(status) >= 400:
                    assert entry["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorEnvelope"}
            if route.permission == "public":
                assert op["security"] == []
            else:
                assert "401" in op["responses"]
