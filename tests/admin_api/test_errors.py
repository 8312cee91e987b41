"""The one error table: stable codes, one status each, no duplicates."""

import pytest

from admin_api.errors import ERRORS, ApiError, _Registry, status_code_for


def test_the_product_codes_exist_with_their_statuses():
    expected = {"bad_request": 400, "unauthorized": 401, "forbidden": 403, "not_found": 404, "conflict": 409,
                "unprocessable_entity": 422, "rate_limited": 429, "mfa_required": 401, "reauth_required": 403,
                "identity_verification_required": 403, "internal_error": 500}
    assert {code: ERRORS[code].status for code in expected} == expected


def test_a_code_cannot_be_registered_twice():
    registry = _Registry()
    registry.add("x", 400, "X")
    with pytest.raises(ValueError):
        registry.add("x", 409, "again")


def test_unknown_codes_are_programming_errors():
    with pytest.raises(ValueError):
        ApiError("teapot")


def test_envelope_shape():
    error = ApiError("unprocessable_entity", details={"field": "email"})
    assert error.envelope() == {"error": {"code": "unprocessable_entity", "message": "The request has invalid fields.",
                                          "details": {"field": "email"}}}
    assert error.status == 422


def test_aiohttp_statuses_map_to_generic_codes():
    assert [status_code_for(s) for s in (404, 405, 413, 500, 502)] == \
        ["not_found", "method_not_allowed", "payload_too_large", "internal_error", "internal_error"]
