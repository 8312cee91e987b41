"""The permission matrix and team rules (pure)."""

import uuid

import pytest

from admin_api import permissions as p
from admin_api.permissions import Member


def member(role, overrides=None, super_owner=False):
    return Member(uuid.uuid4(), role, overrides or {}, super_owner)


@pytest.mark.parametrize("role, permission, expected", [
    ("owner", "billing.manage", True), ("owner", "shopify.manage", True), ("owner", "revenue.read", True),
    ("owner", "team.manage", True), ("owner", "data.export", True),
    ("admin", "apps.manage", True), ("admin", "team.manage", True), ("admin", "reports.read", True),
    ("admin", "audit.read", True), ("admin", "billing.manage", False), ("admin", "shopify.manage", False),
    ("admin", "revenue.read", False), ("admin", "org.manage", False), ("admin", "data.export", False),
    ("agent", "conversations.write", True), ("agent", "contacts.read", True), ("agent", "team.read", True),
    ("agent", "team.manage", False), ("agent", "reports.read", False), ("agent", "revenue.read", False),
    ("agent", "apps.manage", False), ("agent", "audit.read", False),
])
def test_role_defaults_follow_the_product_matrix(role, permission, expected):
    assert p.allows(member(role), permission) is expected


def test_only_the_super_owner_may_delete_the_organisation():
    assert p.allows(member("owner", super_owner=True), "org.delete")
    assert not p.allows(member("owner"), "org.delete")
    assert not p.allows(member("admin", {"revenue": True, "reports": True}), "org.delete")


def test_an_explicit_override_wins_over_the_role_default():
    assert p.allows(member("agent", {"revenue": True}), "revenue.read")
    assert p.allows(member("agent", {"reports": True}), "reports.read")
    assert not p.allows(member("admin", {"reports": False}), "reports.read")
    # an override touches only its own permission
    assert not p.allows(member("agent", {"revenue": True}), "reports.read")


def test_owners_always_have_everything_whatever_their_overrides():
    owner = member("owner", {"revenue": False, "reports": False})
    assert p.allows(owner, "revenue.read") and p.allows(owner, "reports.read")
    assert p.effective_permissions(owner) == frozenset(p.MATRIX) - p.SUPER_OWNER_ONLY


def test_non_boolean_override_values_are_ignored():
    assert not p.allows(member("agent", {"revenue": "yes"}), "revenue.read")


def test_unknown_permission_is_a_programming_error():
    with pytest.raises(ValueError):
        p.allows(member("owner"), "everything")


def test_invites_admins_invite_admins_and_agents_only_owners_invite_owners():
    owner, admin, agent = member("owner"), member("admin"), member("agent")
    assert p.can_invite(owner, "owner") is None
    assert p.can_invite(admin, "admin") is None and p.can_invite(admin, "agent") is None
    assert p.can_invite(admin, "owner") == "forbidden"
    assert p.can_invite(agent, "agent") == "forbidden"


def test_the_super_owner_cannot_be_demoted_or_removed_by_anyone():
    creator = member("owner", super_owner=True)
    other_owner = member("owner")
    assert p.can_change_role(other_owner, creator, "admin") == "forbidden"
    assert p.can_change_role(creator, creator, "admin") == "forbidden"
    assert p.can_remove(other_owner, creator) == "forbidden"
    assert p.can_remove(creator, creator) == "forbidden"


def test_only_owners_touch_owners():
    admin, owner = member("admin"), member("owner")
    assert p.can_change_role(admin, member("agent"), "admin") is None
    assert p.can_change_role(admin, member("agent"), "owner") == "forbidden"
    assert p.can_change_role(admin, owner, "agent") == "forbidden"
    assert p.can_change_role(owner, member("agent"), "owner") is None
    assert p.can_remove(admin, owner) == "forbidden"
    assert p.can_remove(owner, member("owner")) is None
    assert p.can_remove(admin, member("admin")) is None
    assert p.can_remove(member("agent"), member("agent")) == "forbidden"


def test_anyone_but_the_super_owner_may_leave():
    agent = member("agent")
    assert p.can_remove(agent, agent) is None


def test_overrides_can_only_hand_out_access_the_actor_has():
    owner, admin = member("owner"), member("admin")
    agent = member("agent")
    assert p.can_set_overrides(owner, agent, {"revenue": True, "reports": True}) is None
    assert p.can_set_overrides(admin, agent, {"reports": True}) is None
    assert p.can_set_overrides(admin, agent, {"revenue": True}) == "forbidden"
    assert p.can_set_overrides(owner, member("owner"), {"reports": False}) == "unprocessable_entity"
    assert p.can_set_overrides(owner, agent, {"billing": True}) == "unprocessable_entity"
    assert p.can_set_overrides(member("agent"), agent, {"reports": True}) == "forbidden"


def test_merge_overrides_sets_and_clears():
    assert p.merge_overrides({"revenue": True}, {"reports": False}) == {"revenue": True, "reports": False}
    assert p.merge_overrides({"revenue": True, "reports": False}, {"revenue": None}) == {"reports": False}
    assert p.merge_overrides({"junk": 1}, {}) == {}
