"""The OpenAPI 3.1 document, generated from the route declarations (never written by hand)."""

from __future__ import annotations

import re
from typing import Any

from admin_api import permissions
from admin_api.errors import ERRORS
from admin_api.routing import JSON, UNSAFE_METHODS, Route
from admin_api.schemas import Schema

_REGEX_PARAM = re.compile(r"\{([a-z_][a-z0-9_]*):[^}]*\}")


def openapi_path(path: str) -> str:
    return _REGEX_PARAM.sub(r"{\1}", path)


def possible_errors(route: Route) -> list[str]:
    """The error codes a route can answer, from what its declaration makes the pipeline check."""
    codes = ["internal_error"]
    if route.permission != permissions.PUBLIC:
        codes += ["unauthorized", "mfa_required"]
    if route.method in UNSAFE_METHODS:
        codes.append("csrf_failed")
    if route.path_params:
        codes.append("not_found")
    if route.org_scoped:
        codes += ["forbidden", "mfa_enrollment_required"]
    if route.query is not None:
        codes.append("unprocessable_entity")
    if route.body is not None:
        codes += ["bad_request", "unsupported_media_type", "payload_too_large", "unprocessable_entity"]
    if route.raw_body:
        codes.append("payload_too_large")
    if route.reauth:
        codes.append("reauth_required")
    codes += list(route.errors)
    seen: list[str] = []
    for code in codes:
        if code not in seen:
            seen.append(code)
    return seen


class _Components:
    def __init__(self) -> None:
        self.schemas: dict[str, dict] = {}
        self._owners: dict[str, type[Schema]] = {}

    def ref(self, schema: type[Schema]) -> dict[str, str]:
        for cls in [schema, *schema.nested_schemas()]:
            owner = self._owners.get(cls.__name__)
            if owner is None:
                self._owners[cls.__name__] = cls
                self.schemas[cls.__name__] = cls.json_schema()
            elif owner is not cls:
                raise ValueError(f"two schemas are named {cls.__name__}: {owner.__module__} and {cls.__module__}")
        return {"$ref": f"#/components/schemas/{schema.__name__}"}


def _operation(route: Route, components: _Components) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": f"{route.tag}.{route.name}",
        "tags": [route.tag],
        "summary": route.summary or route.name.replace("_", " "),
        "x-permission": route.permission,
    }
    if route.description:
        op["description"] = route.description
    if route.reauth:
        op["x-reauth"] = True
    params = []
    for name in route.path_params:
        params.append({"name": name, "in": "path", "required": True, "schema": route.param_field(name).json_schema()})
    if route.query is not None:
        for name, f in route.query.__fields__.items():
            params.append({"name": name, "in": "query", "required": f.required, "schema": f.json_schema()})
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": components.ref(route.body),
                                                                  "example": route.body.example()}}}
    responses: dict[str, Any] = {}
    if route.status == 204:
        responses["204"] = {"description": "Done (no content)"}
    elif route.response is not None:
        responses[str(route.status)] = {"description": route.summary or "Success",
                                        "content": {route.content_type: {"schema": components.ref(route.response)}}}
    else:
        responses[str(route.status)] = {"description": route.summary or "Success",
                                        "content": {route.content_type: {"schema": {"type": "string"}}}}
    by_status: dict[int, list[str]] = {}
    for code in possible_errors(route):
        by_status.setdefault(ERRORS[code].status, []).append(code)
    for status in sorted(by_status):
        entry: dict[str, Any] = {
            "description": "Error codes: " + ", ".join(by_status[status]),
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
        }
        if status == 429:
            entry["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
        responses[str(status)] = entry
    op["responses"] = responses
    if route.permission == permissions.PUBLIC:
        op["security"] = []
    else:
        cookie = {"cookieAuth": []}
        if route.method in UNSAFE_METHODS:
            cookie["csrfToken"] = []
        op["security"] = [cookie] + ([{"bearerAuth": [route.api_scope]}] if route.api_scope else [])
    return op


def build_document(routes: list[Route], config) -> dict[str, Any]:
    components = _Components()
    paths: dict[str, dict] = {}
    for route in sorted(routes, key=lambda r: (openapi_path(r.path), r.method)):
        paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = _operation(route, components)
    components.schemas["ErrorEnvelope"] = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {"code": {"type": "string", "enum": sorted(ERRORS)},
                           "message": {"type": "string"},
                           "details": {"type": "object"}},
        }},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Convot admin API", "version": "1",
                 "description": "Accounts, sessions, MFA, organisations, members, invites, audit. "
                                "Errors: {\"error\": {\"code\", \"message\", \"details\"}} with stable codes."},
        "servers": [{"url": config.admin_api.public_url.rstrip("/")}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.schemas.items())),
            "securitySchemes": {
                "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "convot_session"},
                "csrfToken": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token",
                              "description": "the session's CSRF token, required on state-changing calls"},
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "REST API key ck_<id>:<secret>"},
            },
        },
    }
