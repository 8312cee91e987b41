"""Gateway tokens: short-lived Ed25519 JWTs (EdDSA) that sockets send after they open.

Issuers (the admin API, the bench) sign with the first key of ``auth.jwt_private_keys``;
verifiers (gateways) accept any key of ``auth.jwt_public_keys`` (or of the private keys when
no public keys are configured), chosen by the header ``kid``.  Rotation without downtime:
add the new key second, deploy, move it first, deploy, drop the old one after the longest
token lifetime.

Every token carries ``iss``, ``aud``, ``exp``, ``nbf``, ``iat``, ``jti``, ``sub``, ``org``
(organisation uuid) and ``role``.  Shopper tokens add ``cid`` (their contact) and ``app``;
member tokens add ``ver`` (``members.token_version``).  :class:`TokenVerifier` refuses
anything else with a :class:`TokenError` whose ``reason`` is one stable code.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from convot.config import Config, ConfigError

ALGORITHMS = ["EdDSA"]  # pinned: the header's alg is never trusted
ROLES = ("shopper", "agent", "admin", "owner")
MEMBER_ROLES = ("agent", "admin", "owner")
REQUIRED = ["iss", "aud", "exp", "nbf", "iat", "jti", "sub", "org", "role"]
LEEWAY_SECONDS = 5  # clock skew tolerated between issuer and gateway hosts

# Stable reasons, in the order a verifier meets them.
REASONS = ("malformed", "unknown_kid", "bad_signature", "expired", "not_yet_valid",
           "bad_audience", "bad_issuer", "missing_claim")


class TokenError(Exception):
    """A token was refused; ``reason`` is one of :data:`REASONS` (safe to log and to send)."""

    def __init__(self, reason: str):
        assert reason in REASONS, reason
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    org: str
    role: str
    jti: str
    iat: int
    exp: int
    contact_id: str | None = None   # shoppers
    app_id: str | None = None       # shoppers
    version: int | None = None      # members

    @property
    def is_shopper(self) -> bool:
        return self.role == "shopper"


def _parse_key_list(value: str, key: str) -> list[tuple[str, str]]:
    out = []
    for item in filter(None, (p.strip() for p in value.split(","))):
        kid, sep, path = item.partition("=")
        if not sep or not kid.strip() or not path.strip():
            raise ConfigError(f"config {key}: expected kid=/path/key.pem[,kid2=/path2.pem], got {item!r}")
        out.append((kid.strip(), path.strip()))
    return out


def _load_private_keys(config: Config) -> list[tuple[str, Ed25519PrivateKey]]:
    entries = _parse_key_list(config.auth.jwt_private_keys, "auth.jwt_private_keys")
    if not entries:
        from convot.embedded import DevSecrets

        secrets_ = DevSecrets.load_or_create(config.data_dir)
        entries = [(secrets_.jwt_key_id, str(secrets_.jwt_private_key_path(config.data_dir)))]
    keys = []
    for kid, path in entries:
        try:
            key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"config auth.jwt_private_keys: cannot read key {kid!r} ({type(exc).__name__})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"config auth.jwt_private_keys: key {kid!r} is not an Ed25519 key")
        keys.append((kid, key))
    return keys


def load_public_keys(config: Config) -> dict[str, Ed25519PublicKey]:
    entries = _parse_key_list(config.auth.jwt_public_keys, "auth.jwt_public_keys")
    if not entries:
        return {kid: key.public_key() for kid, key in _load_private_keys(config)}
    keys = {}
    for kid, path in entries:
        try:
            key = serialization.load_pem_public_key(Path(path).read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"config auth.jwt_public_keys: cannot read key {kid!r} ({type(exc).__name__})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(f"config auth.jwt_public_keys: key {kid!r} is not an Ed25519 key")
        keys[kid] = key
    return keys


class TokenIssuer:
    """Signs gateway tokens with the first configured private key."""

    def __init__(self, config: Config, *, clock=time.time):
        keys = _load_private_keys(config)
        self._kid, self._key = keys[0]
        self._issuer = config.auth.issuer
        self._audience = config.auth.audience
        self._widget_ttl = config.auth.widget_token_ttl
        self._member_ttl = config.auth.agent_token_ttl
        self._clock = clock

    def _sign(self, claims: dict, ttl: int) -> tuple[str, int]:
        now = int(self._clock())
        exp = now + ttl
        payload = {
            "iss": self._issuer, "aud": self._audience, "iat": now, "nbf": now, "exp": exp,
            "jti": uuid.uuid4().hex, **claims,
        }
        return jwt.encode(payload, self._key, algorithm="EdDSA", headers={"kid": self._kid}), exp

    def widget_token(self, org_id, contact_id, app_id) -> tuple[str, int]:
        """A shopper token: may reach only ``contact_id``'s conversations in ``org_id``."""
        return self._sign({"sub": str(contact_id), "org": str(org_id), "role": "shopper",
                           "cid": str(contact_id), "app": str(app_id)}, self._widget_ttl)

    def member_token(self, org_id, user_id, role: str, version: int) -> tuple[str, int]:
        """An agent/admin/owner token for the inbox; ``version`` is members.token_version."""
        if role not in MEMBER_ROLES:
            raise ValueError(f"role must be one of {MEMBER_ROLES}")
        return self._sign({"sub": str(user_id), "org": str(org_id), "role": role, "ver": int(version)},
                          self._member_ttl)


def _uuid_text(value) -> bool:
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


def _unverified_header(token: str) -> dict:
    """The JOSE header, read only to pick the key (``jwt.decode`` then checks everything).

    PyJWT's ``get_unverified_header`` parses and checks the whole token character by
    character, and ``jwt.decode`` does it again: on a connection storm that doubled parse cost
    more than the Ed25519 verification (docs/performance.md).
    """
    head, dot, _rest = token.partition(".")
    if not dot or not _SEGMENT.fullmatch(head) or len(head) % 4 == 1:
        raise TokenError("malformed")
    try:
        header = orjson.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (binascii.Error, ValueError):
        raise TokenError("malformed") from None
    if not isinstance(header, dict):
        raise TokenError("malformed")
    return header


class TokenVerifier:
    """Verifies gateway tokens; pure CPU work, no I/O (revocation is the gateway's check)."""

    def __init__(self, config: Config | None = None, *, keys: dict[str, Ed25519PublicKey] | None = None,
                 issuer: str | None = None, audience: str | None = None):
        self._keys = keys if keys is not None else load_public_keys(config)
        self._issuer = issuer if issuer is not None else config.auth.issuer
        self._audience = audience if audience is not None else config.auth.audience

    def verify(self, token: str) -> Claims:
        if not isinstance(token, str) or not token or len(token) > 4096:
            raise TokenError("malformed")
        header = _unverified_header(token)
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            # "none", HS256 with the public key as secret, ...: never accepted.
            raise TokenError("bad_signature")
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenError("unknown_kid")
        options = {"require": REQUIRED, "verify_iat": True}
        try:
            payload = jwt.decode(token, key, algorithms=ALGORITHMS, audience=self._audience, issuer=self._issuer,
                                 leeway=LEEWAY_SECONDS, options=options)
        except jwt.ExpiredSignatureError:
            raise TokenError("expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("not_yet_valid") from None
        except jwt.InvalidAudienceError:
            raise TokenError("bad_audience") from None
        except jwt.InvalidIssuerError:
            raise TokenError("bad_issuer") from None
        except jwt.MissingRequiredClaimError:
            raise TokenError("missing_claim") from None
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
            raise TokenError("bad_signature") from None
        except jwt.PyJWTError:
            raise TokenError("malformed") from None
        return _claims(payload)


def _claims(p: dict) -> Claims:
    role, org, sub, jti = p["role"], p["org"], p["sub"], p["jti"]
    if role not in ROLES or not _uuid_text(org) or not _uuid_text(sub) or not isinstance(jti, str) \
            or not 8 <= len(jti) <= 64 or not isinstance(p["iat"], int) or not isinstance(p["exp"], int):
        raise TokenError("malformed")
    if role == "shopper":
        cid, app = p.get("cid"), p.get("app")
        if cid is None or app is None:
            raise TokenError("missing_claim")
        if not _uuid_text(cid) or not _uuid_text(app) or cid != sub:
            raise TokenError("malformed")
        return Claims(sub, org, role, jti, p["iat"], p["exp"], contact_id=cid, app_id=app)
    ver = p.get("ver")
    if ver is None:
        raise TokenError("missing_claim")
    if not isinstance(ver, int) or isinstance(ver, bool) or ver < 0:
        raise TokenError("malformed")
    return Claims(sub, org, role, jti, p["iat"], p["exp"], version=ver)
