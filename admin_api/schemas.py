"""Small schema objects for request bodies, query strings and responses.

A schema is a class whose attributes are fields::

    class InviteCreate(Schema):
        email = String(format="email", example="ana@example.com")
        role = Choice("owner", "admin", "agent", example="agent")

``InviteCreate.parse(data)`` validates a decoded JSON object (unknown fields, missing fields,
wrong types and bounds raise :class:`SchemaError` naming the field) and returns an instance
with attributes; ``instance.dump()`` gives the JSON-ready dict; ``InviteCreate.json_schema()``
gives the JSON Schema (2020-12, as OpenAPI 3.1 uses) and ``InviteCreate.example()`` an example
built from the fields' examples.  Pure: no I/O.
"""

from __future__ import annotations

import abc
import datetime as _dt
import re
import uuid
from typing import Any, ClassVar


class _Unset:
    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()
"""Value of an optional field the client did not send (distinct from ``None`` = JSON null)."""


class SchemaError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)+$")


class Field(abc.ABC):
    json_type: ClassVar[str] = "string"

    def __init__(self, *, required: bool = True, nullable: bool = False, default: Any = UNSET,
                 description: str = "", example: Any = UNSET) -> None:
        self.required = required and default is UNSET
        self.nullable = nullable
        self.default = default
        self.description = description
        self._example = example
        self.name = ""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    # -- validation ------------------------------------------------------------------------
    def parse(self, value: Any, path: str, from_text: bool = False) -> Any:
        if value is None:
            if self.nullable:
                return None
            raise SchemaError(path, "must not be null")
        return self.check(value, path, from_text)

    @abc.abstractmethod
    def check(self, value: Any, path: str, from_text: bool) -> Any:
        """Validate a non-null value; return it normalised or raise SchemaError."""

    def dump(self, value: Any) -> Any:
        return value

    # -- documentation ---------------------------------------------------------------------
    def base_schema(self) -> dict[str, Any]:
        return {"type": self.json_type}

    def json_schema(self) -> dict[str, Any]:
        schema = self.base_schema()
        if self.nullable:
            if "$ref" in schema:
                schema = {"anyOf": [schema, {"type": "null"}]}
            else:
                schema["type"] = [schema["type"], "null"]
        if self.description:
            schema["description"] = self.description
        if self.default is not UNSET and self.default is not None:
            schema["default"] = self.dump(self.default)
        return schema

    def example(self) -> Any:
        if self._example is not UNSET:
            return self._example
        return self.default_example()

    def default_example(self) -> Any:
        return "string"


class String(Field):
    def __init__(self, *, min_length: int = 0, max_length: int = 1000, pattern: str | None = None,
                 format: str | None = None, strip: bool | None = None, **kw) -> None:
        super().__init__(**kw)
        self.min_length = min_length
        self.max_length = 254 if format == "email" and max_length == 1000 else max_length
        self.pattern = re.compile(pattern) if pattern else None
        self.format = format
        # Passwords are taken byte for byte; other text is trimmed.
        self.strip = (format != "password") if strip is None else strip

    def check(self, value: Any, path: str, from_text: bool) -> Any:
        if not isinstance(value, str):
            raise SchemaError(path, "must be a string")
        if "\x00" in value:
            raise SchemaError(path, "must not contain NUL characters")
        if self.strip:
            value = value.strip()
        if len(value) < self.min_length:
            raise SchemaError(path, f"must be at least {self.min_length} characters")
        if len(value) > self.max_length:
            raise SchemaError(path, f"must be at most {self.max_length} characters")
        if self.format == "email":
            if not _EMAIL.match(value):
                raise SchemaError(path, "must be an email address")
        if self.pattern is not None and not self.pattern.fullmatch(value):
            raise SchemaError(path, "has an invalid format")
        return value

    def base_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string", "maxLength": self.max_length}
        if self.min_length:
            schema["minLength"] = self.min_length
        if self.pattern is not None:
            schema["pattern"] = self.pattern.pattern
        if self.format:
            schema["format"] = self.format
        return schema

    def default_example(self) -> Any:
        if self.format == "email":
            return "ana@example.com"
        if self.format == "password":
            return "correct horse battery staple"
        return "x" * max(1, self.min_length)


class Integer(Field):
    json_type = "integer"

    def __init__(self, *, minimum: int | None = None, maximum: int | None = None, **kw) -> None:
        super().__init__(**kw)
        self.minimum, self.maximum = minimum, maximum

    def check(self, value: Any, path: str, from_text: bool) -> Any:
        if from_text and isinstance(value, str) and re.fullmatch(r"-?\d{1,18}", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaError(path, "must be a whole number")
        if self.minimum is not None and value < self.minimum:
            raise SchemaError(path, f"must be at least {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise SchemaError(path, f"must be at most {self.maximum}")
        return value

    def base_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer"}
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return schema

    def default_example(self) -> Any:
        return self.minimum if self.minimum is not None else 1


class Boolean(Field):
    json_type = "boolean"

    def check(self, value: Any, path: str, from_text: bool) -> Any:
        if from_text and value in ("true", "false"):
            return value == "true"
        if not isinstance(value, bool):
            raise SchemaError(path, "must be true or false")
        return value

    def default_example(self) -> Any:
        return True


class Choice(Field):
    def __init__(self, *choices: str, **kw) -> None:
        super().__init__(**kw)
        self.choices = choices

    def check(self, value: Any, path: str, from_text: bool) -> Any:
        if value not in self.choices:
            raise SchemaError(path, "must be one of " + ", ".join(self.choices))
        return value

    def base_schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices)}

    def default_example(self) -> Any:
        return self.choices[0]


class Uuid(Field):
    def check(self, value: Any, path: str, from_text: bool) -> Any:
        if isinstance(value, uuid.UUID):
            return value
        if not isinstance(value, str) or len(value) != 36:
            raise SchemaError(path, "must be a UUID")
        try:
            return uuid.UUID(value)
        except ValueError:
            raise SchemaError(path, "must be a UUID") from None

    def dump(self, value: Any) -> Any:
        return None if value is None else str(value)

    def base_schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "uuid"}

    def default_example(self) -> Any:
        return "0f8fad5b-d9cb-469f-a165-70867728950e"


class DateTime(Field):
    def check(self, value: Any, path: str, from_text: bool) -> Any:
        if isinstance(value, _dt.datetime):
            return value
        if not isinstance(value, str) or len(value) > 40:
            raise SchemaError(path, "must be an ISO 8601 date-time")
        try:
            parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise SchemaError(path, "must be an ISO 8601 date-time") from None
        if parsed.tzinfo is None:
            raise SchemaError(path, "must include a time zone")
        return parsed

    def dump(self, value: Any) -> Any:
        return None if value is None else value.isoformat()

    def base_schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "date-time"}

    def default_example(self) -> Any:
        return "2026-01-31T12:00:00+00:00"


class Nested(Field):
    json_type = "object"

    def __init__(self, schema: type["Schema"], **kw) -> None:
        super().__init__(**kw)
        self.schema = schema

    def check(self, value: Any, path: str, from_text: bool) -> Any:
        return self.schema.parse(value, prefix=path + ".")

    def dump(self, value: Any) -> Any:
        return None if value is None else value.dump()

    def base_schema(self) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{self.schema.__name__}"}

    def default_example(self) -> Any:
        return self.schema.example()


class Array(Field):
    json_type = "array"

    def __init__(self, item: Field, *, max_items: int = 1000, **kw) -> None:
        super().__init__(**kw)
        self.item = item
        self.max_items = max_items

    def check(self, value: Any, path: str, from_text: bool) -> Any:
        if not isinstance(value, list):
            raise SchemaError(path, "must be an array")
        if len(value) > self.max_items:
            raise SchemaError(path, f"must have at most {self.max_items} items")
        return [self.item.parse(v, f"{path}[{i}]") for i, v in enumerate(value)]

    def dump(self, value: Any) -> Any:
        return [self.item.dump(v) for v in value]

    def base_schema(self) -> dict[str, Any]:
        return {"type": "array", "items": self.item.json_schema(), "maxItems": self.max_items}

    def default_example(self) -> Any:
        return [self.item.example()]


class Object(Field):
    """A free-form JSON object (audit details and the like): checked for type and size only."""

    json_type = "object"

    def __init__(self, *, max_keys: int = 50, **kw) -> None:
        super().__init__(**kw)
        self.max_keys = max_keys

    def check(self, value: Any, path: str, from_text: bool) -> Any:
        if not isinstance(value, dict):
            raise SchemaError(path, "must be an object")
        if len(value) > self.max_keys:
            raise SchemaError(path, f"must have at most {self.max_keys} keys")
        return value

    def base_schema(self) -> dict[str, Any]:
        return {"type": "object"}

    def default_example(self) -> Any:
        return {}


class Schema:
    """Base of every request and response schema (see the module docstring)."""

    __fields__: ClassVar[dict[str, Field]] = {}

    def __init_subclass__(cls, **kw) -> None:
        super().__init_subclass__(**kw)
        fields: dict[str, Field] = {}
        for base in reversed(cls.__mro__[1:]):
            fields.update(getattr(base, "__fields__", {}))
        for name, value in list(vars(cls).items()):
            if isinstance(value, Field):
                fields[name] = value
                delattr(cls, name)
        cls.__fields__ = fields

    def __init__(self, **values: Any) -> None:
        for name, f in self.__fields__.items():
            if name in values:
                setattr(self, name, values.pop(name))
            elif f.default is not UNSET:
                setattr(self, name, f.default)
            elif f.required:
                raise TypeError(f"{type(self).__name__}: missing field {name!r}")
            else:
                setattr(self, name, UNSET)
        if values:
            raise TypeError(f"{type(self).__name__}: unknown fields {sorted(values)}")

    def __repr__(self) -> str:
        # Field values may be secret (passwords, codes): never print them.
        return f"<{type(self).__name__}>"

    def is_set(self, name: str) -> bool:
        return getattr(self, name) is not UNSET

    @classmethod
    def parse(cls, data: Any, *, prefix: str = "", from_text: bool = False) -> "Schema":
        if not isinstance(data, dict):
            raise SchemaError(prefix.rstrip(".") or "body", "must be a JSON object")
        for key in data:
            if key not in cls.__fields__:
                raise SchemaError(prefix + str(key)[:100], "is not a known field")
        values = {}
        for name, f in cls.__fields__.items():
            if name in data:
                values[name] = f.parse(data[name], prefix + name, from_text)
            elif f.required:
                raise SchemaError(prefix + name, "is required")
        return cls(**values)

    def dump(self) -> dict[str, Any]:
        out = {}
        for name, f in self.__fields__.items():
            value = getattr(self, name)
            if value is UNSET:
                continue
            out[name] = None if value is None else f.dump(value)
        return out

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {name: f.json_schema() for name, f in cls.__fields__.items()},
            "additionalProperties": False,
        }
        required = [name for name, f in cls.__fields__.items() if f.required]
        if required:
            schema["required"] = required
        if cls.__doc__:
            schema["description"] = cls.__doc__.strip().splitlines()[0]
        return schema

    @classmethod
    def example(cls) -> dict[str, Any]:
        out = {}
        for name, f in cls.__fields__.items():
            if f.required or f._example is not UNSET:
                value = f.example()
                out[name] = value
        return out

    @classmethod
    def nested_schemas(cls) -> list[type["Schema"]]:
        found: list[type[Schema]] = []

        def visit(f: Field) -> None:
            if isinstance(f, Nested):
                if f.schema not in found:
                    found.append(f.schema)
                    for inner in f.schema.__fields__.values():
                        visit(inner)
            elif isinstance(f, Array):
                visit(f.item)

        for f in cls.__fields__.values():
            visit(f)
        return found


class Empty(Schema):
    """No fields."""
