"""Authorization decisions, without sockets."""

import uuid

import pytest

from convot.tokens import Claims
from gateway import authz
from gateway.errors import GatewayError

ORG, OTHER = str(uuid.uuid4()), str(uuid.uuid4())
CONTACT, USER = str(uuid.uuid4()), str(uuid.uuid4())


def shopper():
    return authz.Principal(ORG, CONTACT, "shopper", str(uuid.uuid4()), "jti1", 100, None)


def member(role="agent", version=2):
    return authz.Principal(ORG, USER, role, None, "jti2", 100, version)


def test_shopper_reaches_only_its_contact_conversations():
    assert authz.can_access(shopper(), ORG, CONTACT)
    assert not authz.can_access(shopper(), ORG, str(uuid.uuid4()))
    assert not authz.can_access(shopper(), OTHER, CONTACT)
    with pytest.raises(GatewayError) as err:
        authz.require_access(shopper(), ORG, "someone")
    assert err.value.code == "not_found"


def test_member_reaches_only_its_organisation():
    assert authz.can_access(member(), ORG, "any-contact")
    assert not authz.can_access(member(), OTHER, "any-contact")


def test_message_types_by_role():
    assert authz.message_type_for(shopper(), "reply") == ("incoming", "contact")
    with pytest.raises(GatewayError):
        authz.message_type_for(shopper(), "note")
    assert authz.message_type_for(member(), "note") == ("note", "member")
    assert authz.message_type_for(member(), "reply") == ("outgoing", "member")


def test_message_deletion_rules():
    own = {"type": "outgoing", "author_kind": "member", "author_id": USER}
    other = {"type": "outgoing", "author_kind": "member", "author_id": "someone"}
    incoming = {"type": "incoming", "author_kind": "contact", "author_id": CONTACT}
    authz.may_delete_message(member("agent"), own)
    for message in (other, incoming):
        with pytest.raises(GatewayError):
            authz.may_delete_message(member("agent"), message)
        authz.may_delete_message(member("admin"), message)
        authz.may_delete_message(member("owner"), message)
    with pytest.raises(GatewayError):
        authz.may_delete_message(shopper(), incoming)


def test_only_managers_delete_conversations():
    authz.may_update(member("agent"), delete=False)
    with pytest.raises(GatewayError):
        authz.may_update(member("agent"), delete=True)
    authz.may_update(member("admin"), delete=True)
    with pytest.raises(GatewayError):
        authz.may_update(shopper(), delete=False)


def _claims(iat=100, version=2, role="agent"):
    return Claims(USER, ORG, role, "jti2", iat, iat + 900, version=version)


def test_revocation_records():
    assert authz.revocation(_claims(), None, None, None) is None
    assert authz.revocation(_claims(), b"1", None, None) == "token_revoked"
    assert authz.revocation(_claims(iat=100), None, b"100:-1", None) == "access_revoked"
    assert authz.revocation(_claims(iat=101), None, b"100:-1", None) is None        # re-added later
    assert authz.revocation(_claims(version=2), None, b"-1:3", None) == "reauthenticate"
    assert authz.revocation(_claims(version=3), None, b"-1:3", None) is None
    assert authz.revocation(_claims(iat=50), None, None, b"60") == "access_revoked"


def test_control_events_pick_their_sockets():
    m = member(version=2)
    assert authz.control_close({"kind": "member_removed", "org": ORG, "user": USER}, m, 2) == "access_revoked"
    assert authz.control_close({"kind": "member_removed", "org": OTHER, "user": USER}, m, 2) is None
    assert authz.control_close({"kind": "member_removed", "org": ORG, "user": "x"}, m, 2) is None
    assert authz.control_close({"kind": "role_changed", "org": ORG, "user": USER, "version": 3}, m, 2) == "reauthenticate"
    assert authz.control_close({"kind": "role_changed", "org": ORG, "user": USER, "version": 2}, m, 2) is None
    assert authz.control_close({"kind": "token_revoked", "jti": "jti2"}, m, 2) == "token_revoked"
    assert authz.control_close({"kind": "org_deleted", "org": ORG}, shopper(), None) == "access_revoked"
    assert authz.control_close({"kind": "contact_erased", "org": ORG, "contact": CONTACT}, shopper(), None) == "access_revoked"
    assert authz.control_close({"kind": "member_removed", "org": ORG, "user": CONTACT}, shopper(), None) is None


def test_refresh_must_keep_identity():
    authz.may_refresh(member(), _claims())
    with pytest.raises(GatewayError) as err:
        authz.may_refresh(member(), _claims(role="admin"))
    assert err.value.code == "token_mismatch"
