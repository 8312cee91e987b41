"""AES-256-GCM secrets at rest: key ids, row binding, rotation (`convot keys rotate`)."""

import asyncio
import base64
import os
import subprocess
import sys
import uuid

import pytest

from convot.crypto import (ENCRYPTED_COLUMNS, CryptoError, Encryptor, generate_key, parse_keys, rotate_keys,
                           row_aad)

K_OLD = ("k0", os.urandom(32))
K_NEW = ("k9", os.urandom(32))


def spec(*keys):
    return ",".join(f"{kid}={base64.b64encode(key).decode()}" for kid, key in keys)


def test_round_trip_and_key_id_in_the_blob():
    enc = Encryptor([K_NEW, K_OLD])
    aad = row_aad("apps", "identity_secret_enc", uuid.UUID(int=1), uuid.UUID(int=2))
    blob = enc.encrypt(b"secret", aad)
    assert Encryptor.key_id(blob) == "k9"
    assert b"secret" not in blob
    assert enc.decrypt(blob, aad) == b"secret"
    assert enc.encrypt(b"secret", aad) != blob  # random nonce


def test_a_blob_moved_to_another_row_or_column_does_not_decrypt():
    enc = Encryptor([K_NEW])
    blob = enc.encrypt(b"secret", row_aad("apps", "identity_secret_enc", "org-a", "app-1"))
    for other in (row_aad("apps", "identity_secret_enc", "org-b", "app-1"),
                  row_aad("apps", "identity_secret_enc", "org-a", "app-2"),
                  row_aad("webhooks", "secret_enc", "org-a", "app-1")):
        with pytest.raises(CryptoError):
            enc.decrypt(blob, other)


def test_tampering_with_body_or_header_is_detected():
    enc = Encryptor([K_NEW, ("k8", os.urandom(32))])
    aad = b"row"
    blob = bytearray(enc.encrypt(b"secret", aad))
    flipped = bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(CryptoError):
        enc.decrypt(flipped, aad)
    relabelled = bytes(blob).replace(b"k9", b"k8", 1)  # claim another (configured) key
    with pytest.raises(CryptoError):
        enc.decrypt(relabelled, aad)
    with pytest.raises(CryptoError):
        enc.decrypt(b"\x00", aad)


def test_old_keys_still_decrypt_and_unknown_keys_are_named():
    old_blob = Encryptor([K_OLD]).encrypt(b"s", b"row")
    assert Encryptor([K_NEW, K_OLD]).decrypt(old_blob, b"row") == b"s"
    assert Encryptor([K_NEW, K_OLD]).needs_rotation(old_blob)
    with pytest.raises(CryptoError, match="k0"):
        Encryptor([K_NEW]).decrypt(old_blob, b"row")


@pytest.mark.parametrize("bad", ["", "k1", "k1=notbase64!", f"k1={base64.b64encode(b'short').decode()}",
                                 f"bad kid={generate_key()}", f"k1={generate_key()},k1={generate_key()}"])
def test_bad_key_configuration_is_refused(bad):
    with pytest.raises(CryptoError):
        parse_keys(bad)


def test_first_key_encrypts():
    keys = parse_keys(spec(K_NEW, K_OLD))
    assert [k for k, _ in keys] == ["k9", "k0"]
    assert Encryptor(keys).primary_kid == "k9"


async def _seed(owner_db, old: Encryptor) -> dict:
    """One row per encrypted column, encrypted with the old key; answers their identities."""
    user_id, org_id, app_id, hook_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", str(org_id))
        await owner_db.execute(
            "INSERT INTO users (id, email, password_hash, totp_secret_enc) VALUES ($1, $2, 'x', $3)",
            user_id, f"{user_id}@example.com", old.encrypt(b"totp", row_aad("users", "totp_secret_enc", user_id)))
        await owner_db.execute("INSERT INTO organisations (id, name, super_owner_id) VALUES ($1, 'Rot', $2)", org_id, user_id)
        await owner_db.execute(
            "INSERT INTO apps (id, org_id, public_key, name, identity_secret_enc) VALUES ($1, $2, $3, 'A', $4)",
            app_id, org_id, f"app_{app_id.hex}", old.encrypt(b"identity", row_aad("apps", "identity_secret_enc", org_id, app_id)))
        await owner_db.execute(
            "INSERT INTO webhooks (id, org_id, url, secret_enc, events) VALUES ($1, $2, 'https://x', $3, '{}')",
            hook_id, org_id, old.encrypt(b"hook", row_aad("webhooks", "secret_enc", org_id, hook_id)))
        await owner_db.execute(
            "INSERT INTO shopify_connections (org_id, partner_org_id, token_enc, token_last4) VALUES ($1, '1', $2, 'abcd')",
            org_id, old.encrypt(b"shpat", row_aad("shopify_connections", "token_enc", org_id)))
    return {"user": user_id, "org": org_id, "app": app_id, "hook": hook_id}


async def _blobs(owner_db, ids) -> dict:
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", str(ids["org"]))
        return {
            "users.totp_secret_enc": (await owner_db.fetchval("SELECT totp_secret_enc FROM users WHERE id = $1", ids["user"]),
                                      row_aad("users", "totp_secret_enc", ids["user"]), b"totp"),
            "apps.identity_secret_enc": (await owner_db.fetchval("SELECT identity_secret_enc FROM apps WHERE id = $1", ids["app"]),
                                         row_aad("apps", "identity_secret_enc", ids["org"], ids["app"]), b"identity"),
            "webhooks.secret_enc": (await owner_db.fetchval("SELECT secret_enc FROM webhooks WHERE id = $1", ids["hook"]),
                                    row_aad("webhooks", "secret_enc", ids["org"], ids["hook"]), b"hook"),
            "shopify_connections.token_enc": (await owner_db.fetchval(
                "SELECT token_enc FROM shopify_connections WHERE org_id = $1", ids["org"]),
                row_aad("shopify_connections", "token_enc", ids["org"]), b"shpat"),
        }


async def test_rotation_reencrypts_every_column_under_the_first_key(servers, owner_db):
    # The session's key (servers.secrets) is the new primary, so other tests' rows stay readable.
    current = (servers.secrets.encryption_key_id, base64.b64decode(servers.secrets.encryption_key))
    ids = await _seed(owner_db, Encryptor([K_OLD]))
    report = await rotate_keys(servers.owner_url, Encryptor([current, K_OLD]))
    assert set(report.reencrypted) == {f"{c.table}.{c.column}" for c in ENCRYPTED_COLUMNS}
    assert all(report.reencrypted[name] >= 1 for name in report.reencrypted)
    only_new = Encryptor([current])
    for name, (blob, aad, plaintext) in (await _blobs(owner_db, ids)).items():
        assert Encryptor.key_id(blob) == current[0], name
        assert only_new.decrypt(blob, aad) == plaintext, name
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", str(ids["org"]))
        entry = await owner_db.fetchrow("SELECT actor_kind, details FROM audit_log WHERE org_id = $1 AND action = 'keys.rotated'",
                                        ids["org"])
    assert entry["actor_kind"] == "system"
    assert entry["details"] == {"key_id": current[0], "reencrypted": {
        "apps.identity_secret_enc": 1, "webhooks.secret_enc": 1, "shopify_connections.token_enc": 1}}
    again = await rotate_keys(servers.owner_url, Encryptor([current, K_OLD]))
    assert sum(again.reencrypted.values()) == 0


async def test_the_services_role_cannot_use_the_rotation_scope(db):
    async with db.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SELECT set_config('convot.maintenance', 'key_rotation', true)")
            assert await conn.fetchval("SELECT count(*) FROM apps") == 0


async def test_convot_keys_rotate_command(servers, owner_db):
    current = (servers.secrets.encryption_key_id, base64.b64decode(servers.secrets.encryption_key))
    ids = await _seed(owner_db, Encryptor([K_OLD]))
    cfg = servers.config(auth={"encryption_keys": spec(current, K_OLD)})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "convot.cli", "keys", "rotate", env=servers.env(cfg),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    text = out.decode()
    assert f"encryption key: {current[0]}" in text, err.decode()
    unreadable = any(line.split()[-1] != "0" for line in text.splitlines() if "unreadable" in line and "." in line.split()[0])
    assert proc.returncode == (1 if unreadable else 0)
    for name, (blob, aad, plaintext) in (await _blobs(owner_db, ids)).items():
        assert Encryptor([current]).decrypt(blob, aad) == plaintext, name
