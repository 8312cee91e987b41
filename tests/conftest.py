"""Test harness: real PostgreSQL and Redis, started once per session on free ports.

Set CONVOT_TEST_DATABASE_URL (services' role), CONVOT_TEST_DATABASE_MIGRATE_URL (owner) and
CONVOT_TEST_REDIS_URL to use servers of your own instead.  Every async test runs under a guard
that fails it on an unhandled exception in the event loop or a task it left running.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvloop

from convot.config import Config, load_config
from convot.embedded import APP_ROLE, OWNER_ROLE, DevSecrets, EmbeddedPostgres, EmbeddedRedis, free_port
from convot.migrate import apply_migrations

ARTIFACTS = Path(__file__).resolve().parent.parent / ".test-artifacts"


@dataclass
class Servers:
    data_dir: Path
    database_url: str        # services' role (RLS applies)
    owner_url: str           # table owner (migrations, test set-up)
    redis_url: str
    secrets: DevSecrets
    pg: EmbeddedPostgres | None
    redis: EmbeddedRedis | None

    def config(self, **sections) -> Config:
        """A validated Config pointing at these servers, with free ports for every service."""
        base = load_config(env={})
        cfg = base.replace(
            data={"dir": str(self.data_dir)},
            database={"url": self.database_url, "migrate_url": self.owner_url},
            redis={"url": self.redis_url},
            gateway={"port": free_port(), "metrics_port": free_port()},
            engine={"metrics_port": free_port()},
            admin_api={"port": free_port(), "development": True},
            auth={
                "jwt_private_keys": f"{self.secrets.jwt_key_id}={self.secrets.jwt_private_key_path(self.data_dir)}",
                "encryption_keys": f"{self.secrets.encryption_key_id}={self.secrets.encryption_key}",
            },
            log={"format": "json", "level": "info"},
        )
        return cfg.replace(**sections) if sections else cfg

    def env(self, cfg: Config) -> dict[str, str]:
        """CONVOT_* variables that reproduce ``cfg`` in a child process."""
        import dataclasses

        out = {k: v for k, v in os.environ.items() if not k.startswith("CONVOT_")}
        for section in dataclasses.fields(cfg):
            values = dataclasses.asdict(getattr(cfg, section.name))
            for key, value in values.items():
                out[f"CONVOT_{section.name.upper()}_{key.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        return out


def pytest_asyncio_loop_factories(config, item):
    """Tests run on uvloop, like the services."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture(scope="session")
def servers():
    data_dir = Path(tempfile.mkdtemp(prefix="convot-test-"))
    secrets_ = DevSecrets.load_or_create(data_dir)
    pg = redis = None
    db_url = os.environ.get("CONVOT_TEST_DATABASE_URL")
    owner_url = os.environ.get("CONVOT_TEST_DATABASE_MIGRATE_URL", db_url)
    redis_url = os.environ.get("CONVOT_TEST_REDIS_URL")
    try:
        if not db_url:
            pg = EmbeddedPostgres(data_dir, free_port(), secrets_, durable=False)
            pg.start()
            db_url, owner_url = pg.url(APP_ROLE), pg.url(OWNER_ROLE)
        if not redis_url:
            redis = EmbeddedRedis(data_dir, free_port(), secrets_, durable=False)
            redis.start()
            redis_url = redis.url()
        asyncio.run(apply_migrations(owner_url))
        yield Servers(data_dir, db_url, owner_url, redis_url, secrets_, pg, redis)
    finally:
        if redis:
            redis.stop()
        if pg:
            pg.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def config(servers) -> Config:
    return servers.config()


@pytest.fixture
async def db(servers):
    """asyncpg pool as the services' role."""
    from convot.db import create_pool

    pool = await create_pool(servers.database_url, min_size=1, max_size=5)
    yield pool
    await pool.close()


@pytest.fixture
async def owner_db(servers):
    """A connection as the table owner, for seeding across tenants (tests only)."""
    import asyncpg

    from convot.db import _init_connection

    conn = await asyncpg.connect(servers.owner_url)
    await _init_connection(conn)
    # The owner is subject to forced RLS too; set-up code scopes itself per organisation.
    yield conn
    await conn.close()


@pytest.fixture
async def redis_client(servers):
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(servers.redis_url)
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
async def loop_guard(request):
    """Fail the test on an unhandled loop exception or a task it leaves running."""
    loop = asyncio.get_running_loop()
    errors: list[dict] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    before = set(asyncio.all_tasks(loop))
    yield
    await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks(loop) - before if t is not asyncio.current_task() and not t.done()]
    if leaked:
        # a task finishing right now (e.g. the catch-all SMTP server closing a session the
        # outbox just ended) is not left running: up to a second to end on its own
        _, pending = await asyncio.wait(leaked, timeout=1.0)
        leaked = list(pending)
    for task in leaked:
        task.cancel()
    if leaked:
        await asyncio.gather(*leaked, return_exceptions=True)
    loop.set_exception_handler(previous)
    if errors:
        pytest.fail(f"unhandled exception in the event loop: {errors[0].get('message')} {errors[0].get('exception')!r}")
    if leaked:
        pytest.fail(f"test left {len(leaked)} task(s) running: {[t.get_coro() for t in leaked]}")
