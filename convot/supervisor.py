"""`convot up`: the whole product as a tree of processes on one machine.

    convot up
      ├─ postgres        (embedded, when database.url is empty)
      ├─ redis-server    (embedded, AOF on, when redis.url is empty)
      ├─ convot gateway  × N   (SO_REUSEPORT on one port; metrics on metrics_port + i)
      ├─ convot engine   × M
      └─ convot admin-api

Children run in their own sessions, so a terminal's Ctrl-C reaches only this supervisor, which
stops them in order (services first, so they drain, then Redis and PostgreSQL) and waits for
each.  Every child also gets SIGTERM if the supervisor itself dies.  A service that crashes is
restarted after a short pause.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from convot.config import Config
from convot.embedded import APP_ROLE, OWNER_ROLE, DevSecrets, EmbeddedPostgres, EmbeddedRedis, _set_pdeathsig

log = logging.getLogger("convot.up")


def with_dev_secrets(config: Config) -> Config:
    """Fill empty auth keys with the data folder's generated development keys."""
    secrets_ = DevSecrets.load_or_create(config.data_dir)
    auth = {}
    if not config.auth.jwt_private_keys:
        auth["jwt_private_keys"] = f"{secrets_.jwt_key_id}={secrets_.jwt_private_key_path(config.data_dir)}"
    if not config.auth.encryption_keys:
        auth["encryption_keys"] = f"{secrets_.encryption_key_id}={secrets_.encryption_key}"
    return config.replace(auth=auth) if auth else config


def _print_demo(config: Config) -> None:
    import json

    path = config.data_dir / "demo.json"
    if not path.exists():
        return
    demo = json.loads(path.read_text())
    api = config.admin_api.public_url.rstrip("/")
    print(
        "Demo (development data):\n"
        f"  shop page    {api}/demo   (widget of app {demo['app_id']})\n"
        f"  inbox login  {demo['owner']} / {demo['owner_pw']}   (owner)\n"
        f"               {demo['agent']} / {demo['agent_pw']}   (agent)\n",
        flush=True,
    )


@contextlib.contextmanager
def embedded_database(config: Config) -> Iterator[tuple[str, str]]:
    """Start the embedded PostgreSQL just for the duration of a command (migrate, demo)."""
    secrets_ = DevSecrets.load_or_create(config.data_dir)
    pg = EmbeddedPostgres(config.data_dir, config.embedded.postgres_port, secrets_)
    pg.start()
    try:
        yield pg.url(APP_ROLE), pg.url(OWNER_ROLE)
    finally:
        pg.stop()


@dataclass
class Child:
    name: str
    args: list[str]
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "convot.cli", *self.args], env=self.env, stdin=subprocess.DEVNULL,
            preexec_fn=_set_pdeathsig, start_new_session=True,
        )
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _stop_children(children: list[Child], timeout: float) -> None:
    for child in children:
        if child.alive():
            child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        if child.proc is None:
            continue
        try:
            child.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()


def metrics_port_clash(config: Config, gateways: int, workers: int) -> str | None:
    """Gateway i serves /metrics on gateway.metrics_port + i, worker i on engine.metrics_port + i
    (configs/prometheus.yml lists them): the two ranges and the admin API port must not meet."""
    g = set(range(config.gateway.metrics_port, config.gateway.metrics_port + gateways))
    e = set(range(config.engine.metrics_port, config.engine.metrics_port + workers))
    if g & e:
        return (f"gateway metrics ports {min(g)}-{max(g)} overlap worker metrics ports {min(e)}-{max(e)}: "
                "set gateway.metrics_port / engine.metrics_port further apart")
    if config.admin_api.port in g | e or config.gateway.port in g | e:
        return f"a metrics port ({min(g)}-{max(g)}, {min(e)}-{max(e)}) is the admin API or gateway port"
    return None


def run_up(config: Config, *, gateways: int = 1, workers: int = 1) -> int:
    clash = metrics_port_clash(config, gateways, workers)
    if clash:
        print(f"convot up: {clash}", file=sys.stderr, flush=True)
        return 2
    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    data_dir = config.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    secrets_ = DevSecrets.load_or_create(data_dir)
    pg = redis = None
    children: list[Child] = []
    try:
        env = {k: v for k, v in os.environ.items()}
        env["CONVOT_LOG_FORMAT"] = env.get("CONVOT_LOG_FORMAT", "human")
        env["CONVOT_ADMIN_API_DEVELOPMENT"] = env.get("CONVOT_ADMIN_API_DEVELOPMENT", "true")
        env["CONVOT_DATA_DIR"] = str(data_dir)
        if not config.auth.jwt_private_keys or not config.auth.encryption_keys:
            env.update(secrets_.service_env(data_dir))
        owner_url = config.database.migrate_url or config.database.url
        if not config.database.url:
            print(f"starting embedded PostgreSQL on 127.0.0.1:{config.embedded.postgres_port} (data in {data_dir})", flush=True)
            pg = EmbeddedPostgres(data_dir, config.embedded.postgres_port, secrets_)
            pg.start()
            env["CONVOT_DATABASE_URL"] = pg.url(APP_ROLE)
            owner_url = pg.url(OWNER_ROLE)
        if not config.redis.url:
            print(f"starting embedded Redis on 127.0.0.1:{config.embedded.redis_port} (AOF on)", flush=True)
            redis = EmbeddedRedis(data_dir, config.embedded.redis_port, secrets_)
            redis.start()
            env["CONVOT_REDIS_URL"] = redis.url()
        if stopping:
            return 130

        import asyncio

        from convot.migrate import apply_migrations

        applied = asyncio.run(apply_migrations(owner_url))
        print("migrations: " + (", ".join(applied) if applied else "up to date"), flush=True)
        from convot.demo import create_demo, refresh_demo_origin

        demo_config = with_dev_secrets(config.replace(database={"url": env["CONVOT_DATABASE_URL"]})
                                       if "CONVOT_DATABASE_URL" in env else config)
        if not (data_dir / "demo.json").exists():
            asyncio.run(create_demo(demo_config))
        else:
            asyncio.run(refresh_demo_origin(demo_config))

        from convot.metrics import write_scrape_targets

        write_scrape_targets(config, gateways, workers)     # what configs/prometheus.yml scrapes
        for i in range(gateways):
            genv = dict(env, CONVOT_GATEWAY_METRICS_PORT=str(config.gateway.metrics_port + i))
            children.append(Child(f"gateway-{i + 1}", ["gateway"], genv))
        for i in range(workers):
            wenv = dict(env, CONVOT_ENGINE_METRICS_PORT=str(config.engine.metrics_port + i))
            children.append(Child(f"engine-{i + 1}", ["engine"], wenv))
        children.append(Child("admin-api", ["admin-api"], env))
        for child in children:
            child.start()

        api = config.admin_api.public_url.rstrip("/")
        print(
            "\nConvot is up:\n"
            f"  inbox        {api}/app/\n"
            f"  demo shop    {api}/demo\n"
            f"  admin API    {api}/v1/  (health {api}/healthz, metrics {api}/metrics)\n"
            f"  dev mail     {api}/dev/mail  (mail caught by the local SMTP catch-all)\n"
            f"  gateway      {config.admin_api.gateway_public_url}  "
            f"(metrics http://{config.gateway.host}:{config.gateway.metrics_port}/metrics)\n"
            f"  engine       metrics http://127.0.0.1:{config.engine.metrics_port}/metrics\n"
            f"  metrics      gateways :{config.gateway.metrics_port}-{config.gateway.metrics_port + gateways - 1}, "
            f"workers :{config.engine.metrics_port}-{config.engine.metrics_port + workers - 1} "
            "(configs/prometheus.yml)\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        _print_demo(config)
        while not stopping:
            time.sleep(0.2)
            for child in children:
                if not child.alive() and not stopping:
                    code = child.proc.returncode
                    if time.monotonic() - child.started_at < 5 and child.restarts >= 3:
                        print(f"{child.name} keeps failing (exit {code}); stopping", file=sys.stderr, flush=True)
                        stopping = True
                        break
                    child.restarts += 1
                    print(f"{child.name} exited with code {code}; restarting", file=sys.stderr, flush=True)
                    time.sleep(0.5)
                    child.start()
        print("stopping…", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop_children(children, config.gateway.drain_seconds + 5)
        if redis:
            redis.stop()
        if pg:
            pg.stop()
        print("stopped", flush=True)
