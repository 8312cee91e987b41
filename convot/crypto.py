"""Secrets at rest: AES-256-GCM with key ids, bound to the row they belong to.

Keys come from ``auth.encryption_keys`` = ``"kid=base64(32 bytes),kid2=..."``; the FIRST key
encrypts, every listed key decrypts.  To rotate: put a new key first, keep the old one after
it, run ``convot keys rotate`` (re-encrypts every encrypted column under the first key), then
the old key may be dropped.

Blob layout (bytes)::

    0x01 | len(kid) (1 byte) | kid (ASCII) | nonce (12 bytes) | ciphertext + 16-byte tag

The associated data is the header (version + kid) followed by the caller's ``aad``: the row
identity from :func:`row_aad`, so a ciphertext copied into another row (or another column, or
another organisation) does not decrypt.  Nonces are random 96-bit values: fine for far fewer
than 2**32 encryptions per key, which is our scale (secrets, not messages).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = 1
_KID = re.compile(r"^[A-Za-z0-9._-]{1,32}$")


class CryptoError(Exception):
    """A blob does not decrypt (unknown key id, tampered, wrong row) or keys are misconfigured."""


@dataclass(frozen=True)
class EncryptedColumn:
    """A column holding :class:`Encryptor` blobs; ``identity`` names the columns of its AAD."""

    table: str
    column: str
    identity: tuple[str, ...]


# Every encrypted column in the schema.  `convot keys rotate` walks this list; code that
# writes one of these columns MUST use row_aad(table, column, *identity values).
ENCRYPTED_COLUMNS: tuple[EncryptedColumn, ...] = (
    EncryptedColumn("users", "totp_secret_enc", ("id",)),
    EncryptedColumn("apps", "identity_secret_enc", ("org_id", "id")),
    EncryptedColumn("webhooks", "secret_enc", ("org_id", "id")),
    EncryptedColumn("shopify_connections", "token_enc", ("org_id",)),
)


def row_aad(table: str, column: str, *identity: object) -> bytes:
    """Associated data naming one column of one row, e.g. ``row_aad("apps", "identity_secret_enc", org_id, app_id)``."""
    if not identity:
        raise ValueError("row_aad needs the row's identity")
    return ("convot:" + table + "." + column + ":" + "/".join(str(v) for v in identity)).encode()


def parse_keys(spec: str) -> list[tuple[str, bytes]]:
    """``"kid=base64,..."`` -> [(kid, key)], first = encryption key.  Raises CryptoError naming the problem."""
    keys: list[tuple[str, bytes]] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        kid, sep, b64 = part.partition("=")
        kid = kid.strip()
        if not sep or not _KID.match(kid):
            raise CryptoError("auth.encryption_keys: each entry must be kid=base64 with a kid of [A-Za-z0-9._-]{1,32}")
        try:
            key = base64.b64decode(b64.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise CryptoError(f"auth.encryption_keys: key {kid!r} is not valid base64") from None
        if len(key) != 32:
            raise CryptoError(f"auth.encryption_keys: key {kid!r} must be 32 bytes (AES-256), got {len(key)}")
        if any(k == kid for k, _ in keys):
            raise CryptoError(f"auth.encryption_keys: key id {kid!r} appears twice")
        keys.append((kid, key))
    if not keys:
        raise CryptoError("auth.encryption_keys: no key configured")
    return keys


class Encryptor:
    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise CryptoError("at least one key is needed")
        self.primary_kid = keys[0][0]
        self._ciphers = {kid: AESGCM(key) for kid, key in keys}

    @classmethod
    def from_config(cls, config) -> "Encryptor":
        spec = config.auth.encryption_keys
        if not spec:
            from convot.embedded import DevSecrets

            secrets_ = DevSecrets.load_or_create(config.data_dir)
            spec = f"{secrets_.encryption_key_id}={secrets_.encryption_key}"
        return cls(parse_keys(spec))

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._ciphers)

    def _header(self, kid: str) -> bytes:
        raw = kid.encode("ascii")
        return bytes([VERSION, len(raw)]) + raw

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        header = self._header(self.primary_kid)
        nonce = os.urandom(12)
        return header + nonce + self._ciphers[self.primary_kid].encrypt(nonce, plaintext, header + aad)

    @staticmethod
    def key_id(blob: bytes) -> str:
        blob = bytes(blob)
        if len(blob) < 2 or blob[0] != VERSION or len(blob) < 2 + blob[1] + 12 + 16:
            raise CryptoError("not an encrypted value of a known version")
        try:
            return blob[2:2 + blob[1]].decode("ascii")
        except UnicodeDecodeError:
            raise CryptoError("not an encrypted value of a known version") from None

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        blob = bytes(blob)
        kid = self.key_id(blob)
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise CryptoError(f"no key {kid!r} configured to decrypt this value")
        start = 2 + blob[1]
        header, nonce, body = blob[:start], blob[start:start + 12], blob[start + 12:]
        try:
            return cipher.decrypt(nonce, body, header + aad)
        except InvalidTag:
            raise CryptoError("value does not decrypt: tampered, or it belongs to another row") from None

    def needs_rotation(self, blob: bytes) -> bool:
        return self.key_id(blob) != self.primary_kid

    def reencrypt(self, blob: bytes, aad: bytes) -> bytes:
        return self.encrypt(self.decrypt(blob, aad), aad)


def generate_key() -> str:
    """A new base64 AES-256 key for ``auth.encryption_keys``."""
    return base64.b64encode(os.urandom(32)).decode()


@dataclass
class RotationReport:
    reencrypted: dict[str, int]
    current: dict[str, int]
    unreadable: dict[str, int]


async def rotate_keys(owner_url: str, encryptor: Encryptor, *, batch: int = 500) -> RotationReport:
    """Re-encrypt every value of :data:`ENCRYPTED_COLUMNS` under the primary key.

    Runs as the table owner with the ``key_rotation`` maintenance scope (migration 0200).
    Each batch is one transaction; a row is rewritten only if it still holds the value read
    (compare-and-swap), so a concurrent writer is never overwritten.  Values no configured key
    can read are counted, never changed.  Each organisation whose secrets were re-encrypted
    gets a ``keys.rotated`` audit entry.
    """
    import asyncpg
    import orjson

    report = RotationReport({}, {}, {})
    per_org: dict[object, dict[str, int]] = {}
    conn = await asyncpg.connect(owner_url)
    try:
        for col in ENCRYPTED_COLUMNS:
            name = f"{col.table}.{col.column}"
            report.reencrypted[name] = report.current[name] = report.unreadable[name] = 0
            ident = ", ".join(f'"{c}"' for c in col.identity)
            n = len(col.identity)
            after: tuple | None = None
            while True:
                async with conn.transaction():
                    await conn.execute("SELECT set_config('convot.maintenance', 'key_rotation', true)")
                    if after is None:
                        rows = await conn.fetch(
                            f'SELECT {ident}, "{col.column}" AS blob FROM "{col.table}" '
                            f'WHERE "{col.column}" IS NOT NULL ORDER BY {ident} LIMIT $1', batch)
                    else:
                        marks = ", ".join(f"${i + 2}" for i in range(n))
                        rows = await conn.fetch(
                            f'SELECT {ident}, "{col.column}" AS blob FROM "{col.table}" '
                            f'WHERE "{col.column}" IS NOT NULL AND ({ident}) > ({marks}) ORDER BY {ident} LIMIT $1',
                            batch, *after)
                    for row in rows:
                        identity = tuple(row[c] for c in col.identity)
                        aad = row_aad(col.table, col.column, *identity)
                        try:
                            if not encryptor.needs_rotation(row["blob"]):
                                report.current[name] += 1
                                continue
                            fresh = encryptor.reencrypt(row["blob"], aad)
                        except CryptoError:
                            report.unreadable[name] += 1
                            continue
                        where = " AND ".join(f'"{c}" = ${i + 3}' for i, c in enumerate(col.identity))
                        status = await conn.execute(
                            f'UPDATE "{col.table}" SET "{col.column}" = $1 WHERE "{col.column}" = $2 AND {where}',
                            fresh, row["blob"], *identity)
                        if status == "UPDATE 1":
                            report.reencrypted[name] += 1
                            if "org_id" in col.identity:
                                counts = per_org.setdefault(row["org_id"], {})
                                counts[name] = counts.get(name, 0) + 1
                if len(rows) < batch:
                    break
                after = tuple(rows[-1][c] for c in col.identity)
        for org_id, counts in per_org.items():
            async with conn.transaction():
                await conn.execute("SELECT set_config('convot.org_id', $1, true)", str(org_id))
                await conn.execute(
                    "INSERT INTO audit_log (org_id, actor_kind, action, target_type, details) "
                    "VALUES ($1, 'system', 'keys.rotated', 'encryption_key', $2::jsonb)",
                    org_id, orjson.dumps({"key_id": encryptor.primary_kid, "reencrypted": counts}).decode())
    finally:
        await conn.close()
    return report


def run_rotate_command(config) -> int:
    """`convot keys rotate`: print what was re-encrypted; exit 1 if some value is unreadable."""
    import asyncio

    try:
        encryptor = Encryptor.from_config(config)
    except CryptoError as exc:
        print(f"convot: {exc}")
        return 2

    def run(url: str) -> RotationReport:
        return asyncio.run(rotate_keys(url, encryptor))

    url = config.database.migrate_url or config.database.url
    if url:
        report = run(url)
    else:
        from convot.supervisor import embedded_database

        with embedded_database(config) as (_app_url, owner_url):
            report = run(owner_url)
    print(f"encryption key: {encryptor.primary_kid}")
    for name in report.reencrypted:
        print(f"  {name:<36} re-encrypted {report.reencrypted[name]:>6}  already current {report.current[name]:>6}"
              f"  unreadable {report.unreadable[name]:>4}")
    if any(report.unreadable.values()):
        print("some values could not be decrypted with the configured keys: keep every old key until they are fixed")
        return 1
    return 0
