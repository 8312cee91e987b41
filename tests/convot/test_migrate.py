"""Migrations apply once, are recorded, and refuse edited history."""

import asyncpg
import pytest

from convot.migrate import apply_migrations, discover


async def test_applying_again_changes_nothing(servers):
    assert await apply_migrations(servers.owner_url) == []
    conn = await asyncpg.connect(servers.owner_url)
    try:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM convot_meta.schema_migrations ORDER BY 1")]
    finally:
        await conn.close()
    assert versions == [m.version for m in discover()]


async def test_new_migration_applies_and_edited_one_is_refused(servers, tmp_path):
    for m in discover():
        (tmp_path / m.name).write_text(m.sql)
    (tmp_path / "9001_probe.sql").write_text("CREATE TABLE probe_9001 (org_id uuid); DROP TABLE probe_9001;")
    assert await apply_migrations(servers.owner_url, tmp_path) == ["9001_probe.sql"]
    (tmp_path / "9001_probe.sql").write_text("SELECT 1;")
    with pytest.raises(RuntimeError, match="changed after it was applied"):
        await apply_migrations(servers.owner_url, tmp_path)
    conn = await asyncpg.connect(servers.owner_url)
    try:
        await conn.execute("DELETE FROM convot_meta.schema_migrations WHERE version = 9001")
    finally:
        await conn.close()


def test_badly_named_file_is_refused(tmp_path):
    (tmp_path / "1_x.sql").write_text("")
    with pytest.raises(ValueError, match="NNNN_name.sql"):
        discover(tmp_path)
