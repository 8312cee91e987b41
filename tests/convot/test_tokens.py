"""Gateway tokens: what is accepted, and the stable reason for everything refused."""

import base64
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from convot.config import ConfigError
from convot.tokens import TokenError, TokenIssuer, TokenVerifier


def _write_key(tmp_path, name):
    key = Ed25519PrivateKey.generate()
    path = tmp_path / f"{name}.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return key, path


@pytest.fixture
def keyed(config, tmp_path):
    _, p1 = _write_key(tmp_path, "k1")
    return config.replace(auth={"jwt_private_keys": f"k1={p1}"})


def _ids():
    return uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def test_widget_token_round_trip(keyed):
    org, contact, app = _ids()
    token, exp = TokenIssuer(keyed).widget_token(org, contact, app)
    claims = TokenVerifier(keyed).verify(token)
    assert (claims.org, claims.sub, claims.contact_id, claims.app_id) == (str(org), str(contact), str(contact), str(app))
    assert claims.role == "shopper" and claims.is_shopper and claims.version is None
    assert exp - time.time() <= keyed.auth.widget_token_ttl + 1
    assert "kid" in jwt.get_unverified_header(token)


def test_member_token_round_trip(keyed):
    org, user, _ = _ids()
    token, _ = TokenIssuer(keyed).member_token(org, user, "admin", 3)
    claims = TokenVerifier(keyed).verify(token)
    assert (claims.sub, claims.role, claims.version, claims.contact_id) == (str(user), "admin", 3, None)
    with pytest.raises(ValueError):
        TokenIssuer(keyed).member_token(org, user, "shopper", 0)


def _forge(payload, key, kid="k1", alg="EdDSA"):
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def _payload(cfg, **over):
    now = int(time.time())
    org, user, _ = _ids()
    base = {"iss": cfg.auth.issuer, "aud": cfg.auth.audience, "iat": now, "nbf": now, "exp": now + 60,
            "jti": uuid.uuid4().hex, "sub": str(user), "org": str(org), "role": "agent", "ver": 0}
    base.update({k: v(now) if callable(v) else v for k, v in over.items()})  # times relative to now
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize("over,reason", [
    ({"exp": lambda now: now - 120}, "expired"),
    ({"nbf": lambda now: now + 120}, "not_yet_valid"),
    ({"aud": "someone-else"}, "bad_audience"),
    ({"iss": "evil"}, "bad_issuer"),
    ({"jti": None}, "missing_claim"),
    ({"org": None}, "missing_claim"),
    ({"ver": None}, "missing_claim"),
    ({"role": "superuser"}, "malformed"),
    ({"org": "not-a-uuid"}, "malformed"),
])
def test_refusals_have_stable_reasons(keyed, tmp_path, over, reason):
    key = serialization.load_pem_private_key(open(keyed.auth.jwt_private_keys.split("=", 1)[1], "rb").read(), None)
    with pytest.raises(TokenError) as err:
        TokenVerifier(keyed).verify(_forge(_payload(keyed, **over), key))
    assert err.value.reason == reason


def test_shopper_needs_contact_and_app(keyed):
    key = serialization.load_pem_private_key(open(keyed.auth.jwt_private_keys.split("=", 1)[1], "rb").read(), None)
    p = _payload(keyed, role="shopper", ver=None)
    with pytest.raises(TokenError) as err:
        TokenVerifier(keyed).verify(_forge(p, key))
    assert err.value.reason == "missing_claim"
    p.update(cid=str(uuid.uuid4()), app=str(uuid.uuid4()))   # cid must equal sub
    with pytest.raises(TokenError) as err:
        TokenVerifier(keyed).verify(_forge(p, key))
    assert err.value.reason == "malformed"


def test_forged_signature_is_refused(keyed, tmp_path):
    other, _ = _write_key(tmp_path, "other")
    with pytest.raises(TokenError) as err:
        TokenVerifier(keyed).verify(_forge(_payload(keyed), other, kid="k1"))
    assert err.value.reason == "bad_signature"


def test_unknown_kid_is_refused(keyed, tmp_path):
    other, _ = _write_key(tmp_path, "other")
    with pytest.raises(TokenError) as err:
        TokenVerifier(keyed).verify(_forge(_payload(keyed), other, kid="k9"))
    assert err.value.reason == "unknown_kid"


def _b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_alg_none_and_hmac_confusion_are_refused(keyed):
    none_token = _b64({"alg": "none", "kid": "k1", "typ": "JWT"}) + "." + _b64(_payload(keyed)) + "."
    with pytest.raises(TokenError) as err:
        TokenVerifier(keyed).verify(none_token)
    assert err.value.reason == "bad_signature"
    hs = jwt.encode(_payload(keyed), "k" * 32, algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(TokenError) as err:
        TokenVerifier(keyed).verify(hs)
    assert err.value.reason == "bad_signature"


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "x" * 5000, None, 42,
                                     "W10.e30.sig",                 # header is JSON, not an object
                                     "!!!!.e30.sig", "e30=.e30.sig", "e.e30.sig", ".e30.sig",
                                     "bm90IGpzb24.e30.sig"])        # base64 of "not json"
def test_garbage_is_malformed(keyed, garbage):
    with pytest.raises(TokenError) as err:
        TokenVerifier(keyed).verify(garbage)
    assert err.value.reason == "malformed"


def test_rotation_old_and_new_keys_both_verify(config, tmp_path):
    _, old = _write_key(tmp_path, "old")
    _, new = _write_key(tmp_path, "new")
    before = config.replace(auth={"jwt_private_keys": f"old={old}"})
    during = config.replace(auth={"jwt_private_keys": f"new={new},old={old}"})
    after = config.replace(auth={"jwt_private_keys": f"new={new}"})
    org, user, _ = _ids()
    old_token, _ = TokenIssuer(before).member_token(org, user, "agent", 0)
    new_token, _ = TokenIssuer(during).member_token(org, user, "agent", 0)
    assert jwt.get_unverified_header(new_token)["kid"] == "new"
    verifier = TokenVerifier(during)
    assert verifier.verify(old_token).sub == verifier.verify(new_token).sub == str(user)
    with pytest.raises(TokenError) as err:
        TokenVerifier(after).verify(old_token)
    assert err.value.reason == "unknown_kid"


def test_public_keys_only_verifier(config, tmp_path):
    key, priv = _write_key(tmp_path, "k1")
    pub = tmp_path / "k1.pub.pem"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    signer = config.replace(auth={"jwt_private_keys": f"k1={priv}"})
    gateway = config.replace(auth={"jwt_private_keys": "", "jwt_public_keys": f"k1={pub}"})
    token, _ = TokenIssuer(signer).widget_token(*_ids())
    assert TokenVerifier(gateway).verify(token).role == "shopper"


def test_bad_key_configuration_names_the_key(config, tmp_path):
    with pytest.raises(ConfigError, match="auth.jwt_private_keys"):
        TokenIssuer(config.replace(auth={"jwt_private_keys": "nokid"}))
    with pytest.raises(ConfigError, match="auth.jwt_public_keys"):
        TokenVerifier(config.replace(auth={"jwt_public_keys": f"k1={tmp_path / 'missing.pem'}"}))
