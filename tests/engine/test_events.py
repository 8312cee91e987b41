"""Pure helpers of engine/events.py."""

import uuid

from hypothesis import given
from hypothesis import strategies as st

from engine.events import is_uuid


def _reference(value) -> bool:
    """The definition: exactly the canonical text form str(uuid.UUID(value))."""
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


@given(st.uuids())
def test_canonical_uuids_are_accepted(u):
    assert is_uuid(str(u))


@given(st.uuids(), st.integers(0, 35), st.sampled_from("0aAfFgG-{} \n\u0660"))
def test_is_uuid_agrees_with_the_canonical_form(u, at, char):
    text = str(u)
    mutated = text[:at] + char + text[at + 1:]
    assert is_uuid(mutated) == _reference(mutated)
    assert is_uuid(text.upper()) == _reference(text.upper())
    assert is_uuid(text + "\n") is False and is_uuid(text.replace("-", "")) is False


def test_non_strings_are_not_uuids():
    assert not is_uuid(None) and not is_uuid(123) and not is_uuid(uuid.uuid4())
