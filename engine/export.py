"""Organisation export: a zip archive of JSON Lines per entity plus ``manifest.json``.

An owner asks for an export (admin API, ``exports`` row ``pending``); the engine workers'
export loop (``run_exports``) finds organisations with export work through
``convot_export_work_orgs`` (ids only), claims the export under that organisation's scope
(``FOR UPDATE SKIP LOCKED``), and writes the archive from ONE read-only repeatable-read
snapshot, so every file describes the same moment.  Rows are streamed with a cursor and
written by a worker thread, so neither memory nor the event loop depend on the
organisation's size.  The archive is written as ``<id>.zip.part`` and renamed when complete;
a crashed run is retried (a ``running`` export older than ``STALE_SECONDS`` is claimed again).

Secrets never leave: identity secrets, webhook secrets, API key hashes, visitor and invite
token hashes, the Shopify token.  Archives are deleted after ``data_rights.export_retention``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import logging
import os
import threading
import uuid
import zipfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import orjson

from convot.config import Config
from convot.db import scoped
from engine.erasure import export_dir

log = logging.getLogger("convot.engine.export")

FORMAT = "convot-export"
VERSION = 1
STALE_SECONDS = 3600
MAX_ATTEMPTS = 3
FETCH = 1000

# entity -> query (``$1`` = organisation id).  Columns are listed: a secret column added to a
# table later does not slip into archives.
ENTITIES: dict[str, str] = {
    "organisation": """SELECT id, name, super_owner_id, require_mfa, assignment_strategy, timezone, business_hours,
                              plan, deletion_scheduled_at, created_at
                       FROM organisations WHERE id = $1""",
    "members": """SELECT m.user_id, u.email, u.name, m.role, m.overrides, m.availability, m.created_at
                  FROM members m JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY m.created_at, m.user_id""",
    "invites": """SELECT id, email, role, invited_by, expires_at, accepted_at, revoked_at, created_at
                  FROM invites WHERE org_id = $1 ORDER BY created_at, id""",
    "apps": """SELECT id, public_key, name, allowed_origins, require_verification, settings, shopify_app_gid, created_at
               FROM apps WHERE org_id = $1 ORDER BY created_at, id""",
    "contacts": """SELECT c.id, c.external_id, c.email, c.name, c.company, c.phone, c.avatar_url, c.custom_data,
                          c.verified, c.shop, c.shop_verified, c.created_at, c.last_seen_at,
                          COALESCE((SELECT array_agg(t.name ORDER BY t.name) FROM contact_tags ct
                                    JOIN tags t ON t.id = ct.tag_id WHERE ct.contact_id = c.id), '{}') AS tags
                   FROM contacts c WHERE c.org_id = $1 ORDER BY c.created_at, c.id""",
    "conversations": """SELECT c.id, c.app_id, c.contact_id, c.channel, c.status, c.assignee_id, c.last_seq,
                               c.last_message_at, c.first_message, c.created_at, c.updated_at,
                               COALESCE((SELECT array_agg(t.name ORDER BY t.name) FROM conversation_tags ct
                                         JOIN tags t ON t.id = ct.tag_id WHERE ct.conversation_id = c.id), '{}') AS tags
                        FROM conversations c WHERE c.org_id = $1 ORDER BY c.created_at, c.id""",
    "messages": """SELECT conversation_id, seq, id, client_msg_id, type, author_kind, author_id, body, meta, created_at,
                          deleted_at, deleted_by
                   FROM messages WHERE org_id = $1 ORDER BY conversation_id, seq""",
    "tags": "SELECT id, name, created_at FROM tags WHERE org_id = $1 ORDER BY name",
    "notifications": """SELECT id, user_id, kind, conversation_id, message_seq, created_at, read_at
                        FROM notifications WHERE org_id = $1 ORDER BY id""",
    "reminders": """SELECT id, conversation_id, user_id, remind_at, note, fired_at, created_at
                    FROM reminders WHERE org_id = $1 ORDER BY created_at, id""",
    "read_positions": """SELECT user_id, conversation_id, seq, read_at
                         FROM read_positions WHERE org_id = $1 ORDER BY user_id, conversation_id""",
    "assignment_rules": """SELECT id, position, name, conditions, actions, enabled, created_at
                           FROM assignment_rules WHERE org_id = $1 ORDER BY position""",
    "api_keys": """SELECT id, name, scopes, created_by, created_at, last_used_at, revoked_at
                   FROM api_keys WHERE org_id = $1 ORDER BY created_at, id""",
    "webhooks": """SELECT id, url, events, enabled, description, created_at
                   FROM webhooks WHERE org_id = $1 ORDER BY created_at, id""",
    "webhook_deliveries": """SELECT id, webhook_id, event, event_id, status, attempts, last_status, last_error,
                                    created_at, last_attempt_at, delivered_at
                             FROM webhook_deliveries WHERE org_id = $1 ORDER BY created_at, id""",
    "audit_log": """SELECT id, actor_id, actor_kind, action, target_type, target_id, host(ip) AS ip, user_agent, details,
                           created_at
                    FROM audit_log WHERE org_id = $1 ORDER BY id""",
    "shopify_apps": "SELECT app_gid, name FROM shopify_apps WHERE org_id = $1 ORDER BY app_gid",
    "shopify_merchants": """SELECT shop_domain, app_gid, plan, status, mrr_amount, currency, lifetime_gross, installed_at,
                                   uninstalled_at, updated_at
                            FROM shopify_merchants WHERE org_id = $1 ORDER BY shop_domain, app_gid""",
    "shopify_transactions": """SELECT id, type, app_gid, shop_domain, created_at, gross_amount, net_amount, currency,
                                      billing_interval, raw
                               FROM shopify_transactions WHERE org_id = $1 ORDER BY created_at, id""",
    "shopify_events": """SELECT id, type, app_gid, shop_domain, occurred_at, raw
                         FROM shopify_events WHERE org_id = $1 ORDER BY occurred_at, id""",
    "billing": """SELECT plan, status, current_period_end, updated_at FROM billing_accounts WHERE org_id = $1""",
}


def _default(value):
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)         # money stays exact
    if isinstance(value, (bytes, memoryview)):
        raise TypeError("binary columns are never exported")
    return str(value)


def encode_row(row) -> bytes:
    return orjson.dumps(dict(row), default=_default, option=orjson.OPT_UTC_Z) + b"\n"


class _Writer:
    """The zip file, written by one worker thread at a time (zipfile is not async)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.zf = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6)
        self.current = None
        self.digest = None

    def open(self, name: str) -> None:
        with self._lock:
            self.current = self.zf.open(name, "w", force_zip64=True)
            self.digest = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        with self._lock:
            self.current.write(chunk)
            self.digest.update(chunk)

    def close_entry(self) -> str:
        with self._lock:
            self.current.close()
            self.current = None
            return self.digest.hexdigest()

    def add(self, name: str, data: bytes) -> None:
        with self._lock:
            self.zf.writestr(name, data)

    def close(self) -> None:
        with self._lock:
            self.zf.close()


@dataclass
class ArchiveResult:
    path: Path
    size: int
    sha256: str
    counts: dict[str, int]


async def write_archive(pool, org_id, export_id, folder: Path) -> ArchiveResult:
    """Write the organisation's archive; returns where, how big and how many rows per entity."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    final = folder / f"{export_id}.zip"
    part = folder / f"{export_id}.zip.part"
    writer = await asyncio.to_thread(_Writer, part)
    counts: dict[str, int] = {}
    files = []
    org = uuid.UUID(str(org_id))
    try:
        async with pool.acquire() as conn:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                await conn.execute("SELECT set_config('convot.org_id', $1, true)", str(org))
                snapshot_at = await conn.fetchval("SELECT now()")
                for entity, query in ENTITIES.items():
                    name = f"{entity}.jsonl"
                    await asyncio.to_thread(writer.open, name)
                    rows = 0
                    cursor = await conn.cursor(query, org)
                    while True:
                        batch = await cursor.fetch(FETCH)
                        if not batch:
                            break
                        rows += len(batch)
                        await asyncio.to_thread(writer.write, b"".join(encode_row(r) for r in batch))
                    digest = await asyncio.to_thread(writer.close_entry)
                    counts[entity] = rows
                    files.append({"name": name, "entity": entity, "rows": rows, "sha256": digest})
        manifest = {
            "format": FORMAT, "version": VERSION, "org_id": str(org), "export_id": str(export_id),
            "snapshot_at": snapshot_at.astimezone(dt.timezone.utc).isoformat(),
            "files": files,
            "notes": "JSON Lines, one object per line, UTF-8. Times are ISO 8601 UTC; money is a decimal string. "
                     "Secrets (identity and webhook secrets, key hashes, tokens) are never exported.",
        }
        await asyncio.to_thread(writer.add, "manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        await asyncio.to_thread(writer.close)
        size, digest = await asyncio.to_thread(_finish, part, final)
    except BaseException:
        await asyncio.to_thread(_discard, writer, part)
        raise
    return ArchiveResult(final, size, digest, counts)


def _finish(part: Path, final: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    with open(part, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
        os.fsync(fh.fileno())
    os.chmod(part, 0o600)
    os.replace(part, final)
    return final.stat().st_size, h.hexdigest()


def _discard(writer: _Writer, part: Path) -> None:
    try:
        writer.close()
    except Exception:  # the archive is being thrown away anyway
        pass
    part.unlink(missing_ok=True)


# ---- the job ---------------------------------------------------------------------------------

_CLAIM = """
UPDATE exports SET status = 'running', started_at = now(), attempts = attempts + 1, error = NULL
WHERE id = (SELECT id FROM exports
            WHERE org_id = $1 AND (status = 'pending'
                                   OR (status = 'running' AND started_at < now() - make_interval(secs => $2)))
            ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id, attempts
"""


async def run_one(config: Config, pool, org_id) -> uuid.UUID | None:
    """Claim and build one export of the organisation; returns its id (None: nothing to do)."""
    async with scoped(pool, org_id=org_id) as conn:
        claimed = await conn.fetchrow(_CLAIM, org_id, STALE_SECONDS)
    if claimed is None:
        return None
    export_id = claimed["id"]
    folder = export_dir(config) / str(org_id)
    try:
        result = await write_archive(pool, org_id, export_id, folder)
    except asyncio.CancelledError:
        async with scoped(pool, org_id=org_id) as conn:   # give it back for another process
            await conn.execute("UPDATE exports SET status = 'pending' WHERE id = $1 AND status = 'running'", export_id)
        raise
    except Exception as exc:
        failed = claimed["attempts"] >= MAX_ATTEMPTS
        log.error("export failed", extra={"error": type(exc).__name__, "final": failed})
        async with scoped(pool, org_id=org_id) as conn:
            await conn.execute(
                "UPDATE exports SET status = $2, error = $3, finished_at = CASE WHEN $2 = 'failed' THEN now() END "
                "WHERE id = $1", export_id, "failed" if failed else "pending", "archive_failed")
        return export_id
    async with scoped(pool, org_id=org_id) as conn:
        await conn.execute(
            """UPDATE exports SET status = 'done', file_path = $2, size_bytes = $3, sha256 = $4, counts = $5,
                      finished_at = now(), expires_at = now() + make_interval(secs => $6)
               WHERE id = $1""",
            export_id, str(result.path), result.size, result.sha256, result.counts,
            config.data_rights.export_retention)
        await conn.execute(
            "INSERT INTO audit_log (org_id, actor_kind, action, target_type, target_id, details) "
            "VALUES ($1, 'system', 'export.completed', 'export', $2, $3)",
            org_id, str(export_id), {"size_bytes": result.size, "counts": result.counts})
    log.info("export written", extra={"size_bytes": result.size})
    return export_id


async def expire_archives(pool, org_id) -> int:
    async with scoped(pool, org_id=org_id) as conn:
        rows = await conn.fetch(
            "SELECT id, file_path FROM exports WHERE org_id = $1 AND file_path IS NOT NULL AND expires_at <= now()",
            org_id)
        for row in rows:
            await asyncio.to_thread(_unlink, row["file_path"])
            await conn.execute("UPDATE exports SET file_path = NULL WHERE id = $1", row["id"])
    return len(rows)


def _unlink(path: str) -> None:
    Path(path).unlink(missing_ok=True)


async def work_once(config: Config, pool) -> int:
    async with pool.acquire() as conn:
        orgs = [r[0] for r in await conn.fetch("SELECT convot_export_work_orgs($1, $2)", STALE_SECONDS, 100)]
    done = 0
    for org in orgs:
        await expire_archives(pool, org)
        while await run_one(config, pool, org) is not None:
            done += 1
    return done


async def run_exports(config: Config, pool, stop: asyncio.Event) -> None:
    """Engine worker loop: build pending exports, delete expired archives."""
    while not stop.is_set():
        try:
            await work_once(config, pool)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a dependency down: next round
            log.warning("export round failed", extra={"error": type(exc).__name__})
        try:
            await asyncio.wait_for(stop.wait(), config.data_rights.poll_interval)
        except asyncio.TimeoutError:
            pass


def read_manifest(path: Path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return orjson.loads(zf.read("manifest.json"))


def read_entity(path: Path, entity: str) -> list[dict]:
    with zipfile.ZipFile(path) as zf:
        return [orjson.loads(line) for line in io.BytesIO(zf.read(f"{entity}.jsonl")).read().splitlines() if line]
