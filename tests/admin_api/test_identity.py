"""Identity verification and contact resolution of widget sessions: the pure rules."""

import hashlib
import hmac

import pytest

from admin_api.identity import (Candidates, ContactState, Identify, IdentityError, check_custom_data,
                                expected_hash, hash_matches, merge_custom_data, resolve, verify)

SECRET = "a" * 64


def h(value: str, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()


def contact(cid="c1", **kw) -> ContactState:
    base = dict(id=cid, external_id=None, email=None, name=None, company=None, phone=None, avatar_url=None,
                custom_data={}, verified=False, shop=None, shop_verified=False)
    base.update(kw)
    return ContactState(**base)


def none_found(visitor=None):
    return Candidates(visitor, None, [])


def test_user_hash_signs_external_id_else_email():
    assert expected_hash(SECRET, "42") == h("42")
    assert verify(Identify({"external_id": "42", "email": "a@x.com", "user_hash": h("42")}), SECRET).user
    assert not verify(Identify({"external_id": "42", "email": "a@x.com", "user_hash": h("a@x.com")}), SECRET).user
    assert verify(Identify({"email": "a@x.com", "user_hash": h("a@x.com")}), SECRET).user
    assert verify(Identify({"email": "a@x.com", "user_hash": h("a@x.com").upper()}), SECRET).user
    assert not verify(Identify({"email": "a@x.com", "user_hash": h("a@x.com", "b" * 64)}), SECRET).user
    assert not verify(Identify({"email": "a@x.com", "user_hash": "short"}), SECRET).user
    assert not verify(Identify({"user_hash": h("")}), SECRET).user        # nothing to sign: never verified
    assert not verify(None, SECRET).user


def test_shop_hash_is_checked_separately():
    v = verify(Identify({"shop": "ana.myshopify.com", "shop_hash": h("ana.myshopify.com")}), SECRET)
    assert v.shop and not v.user
    assert not verify(Identify({"shop": "ana.myshopify.com", "shop_hash": h("bob.myshopify.com")}), SECRET).shop
    assert not verify(Identify({"shop": "ana.myshopify.com"}), SECRET).shop
    assert not hash_matches(SECRET, None, h(""))


def test_custom_data_rules():
    assert check_custom_data({"plan": "pro", "seats": 3, "ratio": 0.5, "beta": True, "old": None})
    for bad, field in (([], "custom_data"), ({"a b": 1}, "custom_data.a b"), ({"k": {"nested": 1}}, "custom_data.k"),
                       ({"k": "x" * 1001}, "custom_data.k"), ({"k": float("nan")}, "custom_data.k"),
                       ({f"k{i}": 1 for i in range(51)}, "custom_data")):
        with pytest.raises(IdentityError) as err:
            check_custom_data(bad)
        assert err.value.field == field
    assert merge_custom_data({"a": 1, "b": 2}, {"b": 3, "a": None, "c": 4}, overwrite=True) == {"b": 3, "c": 4}
    assert merge_custom_data({"a": 1, "b": 2}, {"b": 3, "a": None, "c": 4}, overwrite=False) == {"a": 1, "b": 2, "c": 4}


def test_anonymous_visitor_keeps_its_contact_or_gets_a_new_one():
    res = resolve(None, verify(None, SECRET), none_found())
    assert res.contact_id is None and res.new_visitor_token and res.changes == {}
    mine = contact("mine")
    res = resolve(None, verify(None, SECRET), none_found(mine))
    assert res.contact_id == "mine" and not res.new_visitor_token


def test_verified_session_matches_external_id_then_email_and_writes_fields():
    ident = Identify({"external_id": "42", "email": "ana@x.com", "name": "Ana", "user_hash": h("42"),
                      "custom_data": {"plan": "pro", "old": None}})
    known = contact("known", external_id="42", email="old@x.com", name="A.", verified=True,
                    custom_data={"old": 1, "keep": 2})
    res = resolve(ident, verify(ident, SECRET), Candidates(None, known, []))
    assert res.contact_id == "known"
    assert res.changes == {"email": "ana@x.com", "name": "Ana", "custom_data": {"keep": 2, "plan": "pro"}}
    assert res.verified_now and not res.revoke_other_visitors  # verified already; identity changed (email)
    # no external id match: the email's contact without another external id is taken, and gets the id
    by_email = [contact("other", email="ana@x.com", external_id="7"), contact("mail", email="ana@x.com")]
    res = resolve(ident, verify(ident, SECRET), Candidates(None, None, by_email))
    assert res.contact_id == "mail" and res.changes["external_id"] == "42" and res.changes["verified"] is True
    assert res.revoke_other_visitors, "adopting an unproven contact drops the tokens of whoever claimed it"


def test_verified_session_merges_the_browsers_unproven_contact():
    anon = contact("anon")
    ident = Identify({"external_id": "42", "user_hash": h("42")})
    known = contact("known", external_id="42", verified=True)
    res = resolve(ident, verify(ident, SECRET), Candidates(anon, known, []))
    assert res.contact_id == "known" and res.merge_from == "anon" and not res.new_visitor_token
    # an unproven visitor with an email from the prompt is the same browser: merged as well
    prompted = contact("prompted", email="typed@x.com")
    res = resolve(ident, verify(ident, SECRET), Candidates(prompted, known, []))
    assert res.merge_from == "prompted"
    # no match anywhere: the browser's unproven contact becomes the verified one, in place
    res = resolve(ident, verify(ident, SECRET), Candidates(anon, None, []))
    assert res.contact_id == "anon" and res.changes == {"external_id": "42", "verified": True} and res.verified_now
    # another verified person's contact in this browser (shared computer) is never merged
    someone = contact("someone", external_id="9", verified=True)
    res = resolve(ident, verify(ident, SECRET), Candidates(someone, known, []))
    assert res.contact_id == "known" and res.merge_from is None and res.new_visitor_token


def test_verified_null_clears_fields():
    ident = Identify({"external_id": "42", "user_hash": h("42"), "phone": None})
    known = contact("known", external_id="42", verified=True, phone="555")
    assert resolve(ident, verify(ident, SECRET), Candidates(None, known, [])).changes == {"phone": None}


def test_unverified_session_only_fills_blanks_and_never_claims_a_verified_contact():
    verified = contact("v", external_id="42", email="ana@x.com", name="Ana", verified=True)
    mine = contact("mine", name="Shown", email=None)
    ident = Identify({"external_id": "42", "email": "evil@x.com", "name": "Evil", "phone": "555",
                      "user_hash": "0" * 64, "custom_data": {"plan": "free"}})
    assert not verify(ident, SECRET).user
    res = resolve(ident, verify(ident, SECRET), Candidates(mine, verified, [verified]))
    assert res.contact_id == "mine", "a wrong hash gets the browser's own contact, not the verified one"
    assert res.changes == {"email": "evil@x.com", "phone": "555", "custom_data": {"plan": "free"}}
    assert "external_id" not in res.changes and "verified" not in res.changes and not res.verified_now
    # the verified contact's own browser, unverified this time: its email is not overwritten
    same = Identify({"email": "changed@x.com", "name": None, "custom_data": {"plan": None}})
    res = resolve(same, verify(same, SECRET), Candidates(verified, None, []))
    assert res.contact_id == "v" and res.changes == {}
    # no browser contact and no unverified match: a new contact without external id
    res = resolve(ident, verify(ident, SECRET), Candidates(None, verified, [verified]))
    assert res.contact_id is None and "external_id" not in res.changes and res.changes["email"] == "evil@x.com"


def test_unverified_session_may_match_unproven_contacts():
    crm = contact("crm", external_id="42")                 # created by the developer's server (API)
    ident = Identify({"external_id": "42"})
    assert resolve(ident, verify(ident, SECRET), Candidates(None, crm, [])).contact_id == "crm"
    lead = contact("lead", email="ana@x.com")
    ident = Identify({"email": "ana@x.com"})
    assert resolve(ident, verify(ident, SECRET), Candidates(None, None, [lead])).contact_id == "lead"


def test_only_a_verified_shop_links_revenue():
    ident = Identify({"shop": "ana.myshopify.com", "shop_hash": h("ana.myshopify.com")})
    res = resolve(ident, verify(ident, SECRET), none_found(contact("c", shop="old.myshopify.com")))
    assert res.changes == {"shop": "ana.myshopify.com", "shop_verified": True}
    forged = Identify({"shop": "big.myshopify.com", "shop_hash": h("other.myshopify.com")})
    res = resolve(forged, verify(forged, SECRET), none_found(contact("c", shop="ana.myshopify.com", shop_verified=True)))
    assert res.changes == {}, "an unproven shop never replaces a proven one"
    res = resolve(forged, verify(forged, SECRET), none_found(contact("c")))
    assert res.changes == {"shop": "big.myshopify.com", "shop_verified": False}


def test_hashes_with_any_characters_are_just_wrong():
    assert not hash_matches(SECRET, "42", "é" * 64)
    assert not verify(Identify({"external_id": "42", "user_hash": "ü" * 64, "shop": "a.myshopify.com",
                                "shop_hash": "☃" * 64}), SECRET).user
