"""Who a widget session is: identity verification and contact resolution.  Pure: no I/O.

The widget sends ``identify`` fields (docs/widget.md).  A session is **verified** when
``user_hash`` is the hex HMAC-SHA256 of ``external_id`` (or of ``email`` when there is no
``external_id``) keyed by the app's identity secret, compared in constant time; ``shop`` is
proven separately by ``shop_hash`` over ``shop``.

Resolution (:func:`resolve`) picks the contact the session belongs to and what changes:

* verified: match by ``external_id`` (any contact), then ``email`` (a contact without another
  ``external_id``), else the browser's own contact when it is unproven (not verified, no
  ``external_id``), else a new contact.  Every given field is written (``null`` clears), the
  contact becomes verified, and an unproven contact of the same browser is merged into it.  A contact that was not verified
  before loses its other visitor tokens (whoever claimed that identity without proof loses
  access).
* unverified: match by ``external_id``, then ``email``, among contacts that are NOT verified
  (claiming a verified person's identity without proof gets nothing of theirs); else the
  browser's own contact; else a new contact.  Fields are only written where the contact has
  none (never overwritten, never cleared), and ``external_id`` is never set (it would let a
  later verified session be matched to a contact whose tokens someone else holds).
* ``shop`` with a valid ``shop_hash`` sets ``shop`` and ``shop_verified`` (a verified shop
  of the contact is only replaced by another verified one); without one it only fills a
  blank ``shop`` and is never verified, so it never links the contact to revenue data.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PROFILE_FIELDS = ("email", "name", "company", "phone", "avatar_url")
MAX_CUSTOM_KEYS = 50
MAX_CUSTOM_KEY_LENGTH = 100
MAX_CUSTOM_STRING = 1000
CUSTOM_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
SHOP = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}\.myshopify\.com$")


class IdentityError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def expected_hash(secret: str, value: str) -> str:
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()


def hash_matches(secret: str, value: str | None, given: str | None) -> bool:
    """Constant-time check of a user_hash / shop_hash (case-insensitive hex)."""
    if not value or not isinstance(given, str) or len(given) != 64:
        return False
    # as bytes: a hash with non-ASCII characters is simply wrong, never an error
    return hmac.compare_digest(expected_hash(secret, value).encode(), given.lower().encode())


def check_custom_data(value: Any, path: str = "custom_data") -> dict[str, Any]:
    """A flat object of at most 50 keys; values strings (<= 1000), numbers, booleans or null."""
    if not isinstance(value, dict):
        raise IdentityError(path, "must be an object")
    if len(value) > MAX_CUSTOM_KEYS:
        raise IdentityError(path, f"must have at most {MAX_CUSTOM_KEYS} keys")
    for key, item in value.items():
        if not isinstance(key, str) or not CUSTOM_KEY.match(key):
            raise IdentityError(f"{path}.{str(key)[:MAX_CUSTOM_KEY_LENGTH]}", "keys are 1-100 of A-Z a-z 0-9 _ . : -")
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, str):
            if len(item) > MAX_CUSTOM_STRING or "\x00" in item:
                raise IdentityError(f"{path}.{key}", f"must be at most {MAX_CUSTOM_STRING} characters")
        elif isinstance(item, (int, float)):
            if isinstance(item, float) and not math.isfinite(item):
                raise IdentityError(f"{path}.{key}", "must be a finite number")
        else:
            raise IdentityError(f"{path}.{key}", "must be a string, number, boolean or null")
    return value


def merge_custom_data(current: Mapping[str, Any], changes: Mapping[str, Any], *, overwrite: bool) -> dict[str, Any]:
    """``overwrite``: later values win and ``null`` removes a key; otherwise only new keys are added."""
    merged = dict(current)
    for key, value in changes.items():
        if overwrite:
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        elif key not in merged and value is not None:
            merged[key] = value
    if len(merged) > MAX_CUSTOM_KEYS:
        raise IdentityError("custom_data", f"the contact would have more than {MAX_CUSTOM_KEYS} keys")
    return merged


@dataclass(frozen=True)
class Identify:
    """The identify payload after schema validation (absent fields are not in ``given``)."""

    given: Mapping[str, Any]

    def get(self, name: str) -> Any:
        return self.given.get(name)

    def has(self, name: str) -> bool:
        return name in self.given

    @property
    def identity_value(self) -> str | None:
        """What ``user_hash`` signs: ``external_id``, else ``email``."""
        return self.given.get("external_id") or self.given.get("email") or None


@dataclass(frozen=True)
class Verification:
    user: bool
    shop: bool


def verify(identify: Identify | None, secret: str) -> Verification:
    if identify is None:
        return Verification(False, False)
    user = hash_matches(secret, identify.identity_value, identify.get("user_hash"))
    shop = hash_matches(secret, identify.get("shop"), identify.get("shop_hash"))
    return Verification(user, shop)


@dataclass(frozen=True)
class ContactState:
    """What resolution needs to know about an existing contact."""

    id: str
    external_id: str | None
    email: str | None
    name: str | None
    company: str | None
    phone: str | None
    avatar_url: str | None
    custom_data: Mapping[str, Any]
    verified: bool
    shop: str | None
    shop_verified: bool

    @property
    def mergeable(self) -> bool:
        """A browser's unproven contact: no verified identity, no external id."""
        return not self.verified and not self.external_id

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "ContactState":
        return cls(id=str(row["id"]), external_id=row["external_id"], email=row["email"], name=row["name"],
                   company=row["company"], phone=row["phone"], avatar_url=row["avatar_url"],
                   custom_data=dict(row["custom_data"] or {}), verified=row["verified"], shop=row["shop"],
                   shop_verified=row["shop_verified"])


@dataclass(frozen=True)
class Candidates:
    visitor: ContactState | None          # the browser's own contact (from its visitor token)
    by_external_id: ContactState | None   # the contact with identify.external_id
    by_email: list[ContactState]          # contacts with identify.email, most recent first


@dataclass
class Resolution:
    contact_id: str | None                # None: create a new contact
    changes: dict[str, Any] = field(default_factory=dict)   # column -> new value
    verified_now: bool = False            # became verified (or verified identity changed): contact.identified
    merge_from: str | None = None         # the browser's anonymous contact to merge into this one
    revoke_other_visitors: bool = False   # adopting a contact that was not verified: drop its other tokens
    new_visitor_token: bool = False       # the browser's token belongs to another contact


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == {}


def resolve(identify: Identify | None, verification: Verification, found: Candidates) -> Resolution:
    target = _pick(identify, verification, found)
    visitor = found.visitor
    res = Resolution(contact_id=target.id if target else None)
    given = identify.given if identify is not None else {}
    current: dict[str, Any] = {}
    if target is not None:
        current = {"external_id": target.external_id, **{f: getattr(target, f) for f in PROFILE_FIELDS},
                   "custom_data": dict(target.custom_data), "shop": target.shop, "shop_verified": target.shop_verified,
                   "verified": target.verified}
    else:
        current = {"external_id": None, **{f: None for f in PROFILE_FIELDS}, "custom_data": {}, "shop": None,
                   "shop_verified": False, "verified": False}

    if verification.user:
        for name in ("external_id", *PROFILE_FIELDS):
            if name in given and given[name] != current[name]:
                res.changes[name] = given[name]
        if "custom_data" in given:
            merged = merge_custom_data(current["custom_data"], given["custom_data"], overwrite=True)
            if merged != current["custom_data"]:
                res.changes["custom_data"] = merged
        if not current["verified"]:
            res.changes["verified"] = True
            res.revoke_other_visitors = target is not None
        if not current["verified"] or "external_id" in res.changes or "email" in res.changes:
            res.verified_now = True
    else:
        for name in PROFILE_FIELDS:
            if given.get(name) is not None and _blank(current[name]):
                res.changes[name] = given[name]
        if isinstance(given.get("custom_data"), dict):
            merged = merge_custom_data(current["custom_data"], given["custom_data"], overwrite=False)
            if merged != current["custom_data"]:
                res.changes["custom_data"] = merged

    shop = given.get("shop")
    if shop is not None:
        if verification.shop:
            if shop != current["shop"] or not current["shop_verified"]:
                res.changes["shop"], res.changes["shop_verified"] = shop, True
        elif _blank(current["shop"]):
            res.changes["shop"], res.changes["shop_verified"] = shop, False

    if verification.user and visitor is not None and target is not None and visitor.id != target.id \
            and visitor.mergeable:
        res.merge_from = visitor.id
    res.new_visitor_token = visitor is None or target is None or visitor.id != target.id
    if res.merge_from:
        res.new_visitor_token = False   # the browser's token moves over with the merge
    return res


def _pick(identify: Identify | None, verification: Verification, found: Candidates) -> ContactState | None:
    visitor = found.visitor
    if identify is None:
        return visitor
    external_id, email = identify.get("external_id"), identify.get("email")
    if verification.user:
        if external_id and found.by_external_id is not None:
            return found.by_external_id
        if email:
            for c in found.by_email:
                if not c.external_id or c.external_id == external_id:
                    return c
        if visitor is not None and visitor.mergeable:
            return visitor          # this browser's unproven contact becomes the verified one
        return None
    # unverified: a verified contact is never handed to an unproven claim
    if external_id and found.by_external_id is not None and not found.by_external_id.verified:
        return found.by_external_id
    if email:
        for c in found.by_email:
            if not c.verified and not c.external_id:
                return c
    return visitor
