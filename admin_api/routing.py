"""The route-declaration layer.

One declaration per route feeds the aiohttp router, the request pipeline (authentication,
CSRF, organisation scope, permission, validation, re-authentication) and the OpenAPI
generator, so the three cannot drift apart.  See docs/admin-api.md.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from admin_api import permissions
from admin_api.keys import ROUTES
from admin_api.schemas import Field, Schema, Uuid

_PARAM = re.compile(r"\{([a-z_][a-z0-9_]*)(?::[^}]*)?\}")
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON = "application/json"

Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    permission: str
    tag: str
    body: type[Schema] | None = None
    query: type[Schema] | None = None
    params: dict[str, Field] = field(default_factory=dict)
    response: type[Schema] | None = None
    status: int = 200
    content_type: str = JSON
    reauth: bool = False
    api_scope: str | None = None
    summary: str = ""
    description: str = ""
    errors: tuple[str, ...] = ()
    raw_body: bool = False        # the handler reads the bytes itself (signed webhooks)
    cors: bool = False            # cross-origin by design (widget session): the handler checks the Origin

    @property
    def name(self) -> str:
        return self.handler.__name__

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)

    @property
    def path_params(self) -> list[str]:
        return _PARAM.findall(self.path)

    @property
    def org_scoped(self) -> bool:
        return permissions.is_member_permission(self.permission)

    def param_field(self, name: str) -> Field:
        f = self.params.get(name)
        if f is None:
            f = Uuid()
            f.name = name
        return f


class RouteTable:
    """The routes of one resource module; ``app.py`` installs every table."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.routes: list[Route] = []

    def route(self, method: str, path: str, *, permission: str, body: type[Schema] | None = None,
              query: type[Schema] | None = None, params: dict[str, Field] | None = None,
              response: type[Schema] | None = None, status: int = 200, content_type: str = JSON,
              reauth: bool = False, api_scope: str | None = None, summary: str = "", description: str = "",
              errors: Iterable[str] = (), cors: bool = False,
              raw_body: bool = False) -> Callable[[Handler], Handler]:
        method = method.upper()
        if method not in METHODS:
            raise ValueError(f"{path}: unsupported method {method}")
        if not isinstance(permission, str) or not permission:
            raise ValueError(f"{method} {path}: a route must declare its permission")
        if permission not in permissions.NON_MEMBER_PERMISSIONS and not permissions.is_member_permission(permission):
            raise ValueError(f"{method} {path}: unknown permission {permission!r}")
        names = _PARAM.findall(path)
        if permissions.is_member_permission(permission) and "org_id" not in names:
            raise ValueError(f"{method} {path}: member permission {permission!r} needs an {{org_id}} in the path")
        if permission == permissions.PUBLIC and "org_id" in names:
            raise ValueError(f"{method} {path}: a public route cannot be organisation-scoped")
        if reauth and permission == permissions.PUBLIC:
            raise ValueError(f"{method} {path}: re-authentication needs a session")
        for name in params or {}:
            if name not in names:
                raise ValueError(f"{method} {path}: params names {name!r}, which is not in the path")
        if response is None and content_type == JSON and status != 204:
            raise ValueError(f"{method} {path}: a JSON route declares its response schema")
        if cors and permission != permissions.PUBLIC:
            raise ValueError(f"{method} {path}: only public routes may be called cross-origin")
        if body is not None and method == "GET":
            raise ValueError(f"{method} {path}: GET takes no body")
        if raw_body and (body is not None or method == "GET"):
            raise ValueError(f"{method} {path}: a raw-body route has no body schema and is not a GET")

        def decorate(handler: Handler) -> Handler:
            self.routes.append(Route(
                method=method, path=path, handler=handler, permission=permission, tag=self.tag, body=body,
                query=query, params=dict(params or {}), response=response, status=status,
                content_type=content_type, reauth=reauth, api_scope=api_scope, summary=summary,
                description=description or (handler.__doc__ or "").strip(), errors=tuple(errors), cors=cors,
                raw_body=raw_body))
            return handler

        return decorate


def install(app: web.Application, tables: Iterable[RouteTable]) -> list[Route]:
    """Register every declared route on ``app``'s router; refuse duplicates."""
    from admin_api.pipeline import run_route

    seen: dict[tuple[str, str], Route] = {r.key: r for r in app.get(ROUTES, [])}
    installed: list[Route] = []
    for table in tables:
        for route in table.routes:
            if route.key in seen:
                raise ValueError(f"{route.method} {route.path} declared twice")
            seen[route.key] = route

            async def endpoint(request: web.Request, _route: Route = route) -> web.StreamResponse:
                return await run_route(_route, request)

            endpoint.__convot_route__ = route  # type: ignore[attr-defined]
            endpoint.__name__ = route.name
            app.router.add_route(route.method, route.path, endpoint, name=f"{route.tag}.{route.name}")
            installed.append(route)
    app[ROUTES] = [*app.get(ROUTES, []), *installed]
    return installed


def declared_route(handler: Any) -> Route | None:
    return getattr(handler, "__convot_route__", None)


def undeclared_routes(app: web.Application) -> list[str]:
    """Every route of ``app``'s router that did not come from a declaration (must be empty)."""
    missing = []
    for resource_route in app.router.routes():
        if declared_route(resource_route.handler) is None:
            info = resource_route.resource.get_info() if resource_route.resource else {}
            path = info.get("path") or info.get("formatter") or str(resource_route.resource)
            missing.append(f"{resource_route.method} {path}")
    return missing
