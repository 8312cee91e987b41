"""Schema objects: validation naming the field, JSON Schema, examples (pure)."""

import uuid

import pytest

from admin_api.schemas import (UNSET, Array, Boolean, Choice, DateTime, Integer, Nested, Schema, SchemaError, String,
                               Uuid)


class Inner(Schema):
    flag = Boolean(required=False, nullable=True)


class Body(Schema):
    email = String(format="email")
    role = Choice("owner", "agent")
    count = Integer(minimum=1, maximum=5, default=2)
    inner = Nested(Inner, required=False)
    tags = Array(String(max_length=5), max_items=2, required=False)
    id = Uuid(required=False)
    at = DateTime(required=False)


def test_valid_body_parses_with_defaults_and_unset():
    b = Body.parse({"email": " ana@example.com ", "role": "agent"})
    assert b.email == "ana@example.com" and b.count == 2
    assert b.inner is UNSET and not b.is_set("inner")


@pytest.mark.parametrize("data, field", [
    ({"email": "ana@example.com", "role": "agent", "admin": True}, "admin"),
    ({"role": "agent"}, "email"),
    ({"email": "not-an-email", "role": "agent"}, "email"),
    ({"email": "ana@example.com", "role": "god"}, "role"),
    ({"email": "ana@example.com", "role": "agent", "count": 9}, "count"),
    ({"email": "ana@example.com", "role": "agent", "count": True}, "count"),
    ({"email": "ana@example.com", "role": "agent", "inner": {"flag": "yes"}}, "inner.flag"),
    ({"email": "ana@example.com", "role": "agent", "inner": {"x": 1}}, "inner.x"),
    ({"email": "ana@example.com", "role": "agent", "tags": ["a", "b", "c"]}, "tags"),
    ({"email": "ana@example.com", "role": "agent", "tags": ["toolong"]}, "tags[0]"),
    ({"email": "ana@example.com", "role": "agent", "id": "nope"}, "id"),
    ({"email": "ana@example.com", "role": "agent", "at": "2026-01-01T00:00:00"}, "at"),
    ({"email": "a\x00@example.com", "role": "agent"}, "email"),
    ({"email": None, "role": "agent"}, "email"),
])
def test_bad_input_names_the_field(data, field):
    with pytest.raises(SchemaError) as exc:
        Body.parse(data)
    assert exc.value.field == field


def test_a_non_object_body_is_refused():
    with pytest.raises(SchemaError) as exc:
        Body.parse([1, 2])
    assert exc.value.field == "body"


def test_nullable_field_takes_null():
    b = Body.parse({"email": "ana@example.com", "role": "agent", "inner": {"flag": None}})
    assert b.inner.flag is None and b.inner.is_set("flag")


def test_query_strings_are_coerced():
    class Q(Schema):
        limit = Integer(minimum=1, default=10)
        on = Boolean(required=False)
        id = Uuid(required=False)

    u = uuid.uuid4()
    q = Q.parse({"limit": "7", "on": "true", "id": str(u)}, from_text=True)
    assert (q.limit, q.on, q.id) == (7, True, u)
    with pytest.raises(SchemaError):
        Q.parse({"limit": "7"})  # text is only coerced for query strings


def test_dump_and_json_schema_agree():
    b = Body(email="a@b.co", role="owner", id=uuid.UUID(int=1), tags=["x"])
    dumped = b.dump()
    assert dumped["id"] == str(uuid.UUID(int=1)) and "inner" not in dumped
    schema = Body.json_schema()
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["email", "role"]
    assert set(schema["properties"]) == set(Body.__fields__)
    assert schema["properties"]["inner"] == {"$ref": "#/components/schemas/Inner"}
    assert Body.nested_schemas() == [Inner]


def test_examples_parse_back():
    assert Body.parse(Body.example()).role == "owner"


def test_response_construction_refuses_missing_and_unknown_fields():
    with pytest.raises(TypeError):
        Body(email="a@b.co")
    with pytest.raises(TypeError):
        Body(email="a@b.co", role="owner", extra=1)


def test_repr_never_shows_values():
    class Secret(Schema):
        password = String(format="password")

    assert "hunter2" not in repr(Secret(password="hunter2hunter2"))
