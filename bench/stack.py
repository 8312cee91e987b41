"""The system under test as real processes: gateway(s) and engine worker(s) started with
`python -m convot.cli`, and (for standalone runs) embedded PostgreSQL and Redis."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from convot.config import Config, load_config
from convot.embedded import (APP_ROLE, OWNER_ROLE, DevSecrets, EmbeddedPostgres, EmbeddedRedis, _set_pdeathsig,
                             free_port, wait_for_port)


def config_env(cfg: Config) -> dict[str, str]:
    """CONVOT_* variables that reproduce ``cfg`` in a child process."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("CONVOT_")}
    for section in dataclasses.fields(cfg):
        for key, value in dataclasses.asdict(getattr(cfg, section.name)).items():
            out[f"CONVOT_{section.name.upper()}_{key.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


class Services:
    """Gateways and workers as child processes; ``kill`` for fault tests, ``stop`` drains."""

    def __init__(self, cfg: Config, *, gateways: int = 1, workers: int = 1, log_dir: Path | None = None,
                 separate_ports: bool = False):
        self.cfg = cfg
        self.own_log_dir = log_dir is None         # a temporary folder: removed by stop() unless something failed
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="convot-bench-logs-"))
        self.killed: set[str] = set()             # stopped with SIGKILL on purpose (fault tests)
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.metrics_ports: dict[str, int] = {}      # name -> its /metrics port
        self.gateways = gateways
        self.workers = workers
        self.separate_ports = separate_ports

    def start_one(self, name: str) -> None:
        kind = "gateway" if name.startswith("gateway") else "engine"
        cfg = self.cfg
        if kind == "gateway":
            port = self.ports.get(name) or (free_port() if self.separate_ports else cfg.gateway.port)
            self.ports[name] = port
            self.metrics_ports[name] = self.metrics_ports.get(name) or free_port()
            cfg = cfg.replace(gateway={"port": port, "metrics_port": self.metrics_ports[name]})
        else:
            self.metrics_ports[name] = self.metrics_ports.get(name) or free_port()
            cfg = cfg.replace(engine={"metrics_port": self.metrics_ports[name]})
        log = open(self.log_dir / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "convot.cli", kind], env=config_env(cfg), stdout=log, stderr=log,
            stdin=subprocess.DEVNULL, preexec_fn=_set_pdeathsig, start_new_session=True)
        log.close()
        if kind == "gateway":
            wait_for_port(self.ports[name], 30, self.procs[name], name)

    def start(self) -> "Services":
        for i in range(self.workers):
            self.start_one(f"engine-{i + 1}")
        for i in range(self.gateways):
            self.start_one(f"gateway-{i + 1}")
        return self

    def port(self, name: str = "gateway-1") -> int:
        return self.ports[name]

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            self.killed.add(name)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def terminate(self, name: str, timeout: float = 20) -> int:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop(self) -> None:
        """Drain every process; the temporary log folder goes too, unless a process exited
        with an error (then its path is printed)."""
        failed = [name for name in list(self.procs)
                  if self.terminate(name) not in (0, None) and name not in self.killed]
        if not self.own_log_dir:
            return
        if failed:
            print(f"bench: {', '.join(failed)} exited with an error; logs kept in {self.log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")


class EmbeddedServers:
    """PostgreSQL + Redis for a standalone bench run, in a temporary folder; with
    ``redis_cluster=N`` a local N-node Redis Cluster instead of one Redis (bench/cluster.py)."""

    def __init__(self, redis_cluster: int = 0):
        self.dir = Path(tempfile.mkdtemp(prefix="convot-bench-"))
        self.secrets = DevSecrets.load_or_create(self.dir)
        self.pg = EmbeddedPostgres(self.dir, free_port(), self.secrets, durable=True)
        if redis_cluster:
            from bench.cluster import EmbeddedRedisCluster

            self.redis = EmbeddedRedisCluster(self.dir, self.secrets, nodes=redis_cluster, durable=True)
        else:
            self.redis = EmbeddedRedis(self.dir, free_port(), self.secrets, durable=True)

    def start(self) -> Config:
        import asyncio

        from convot.migrate import apply_migrations

        self.pg.start()
        self.redis.start()
        asyncio.run(apply_migrations(self.pg.url(OWNER_ROLE)))
        return load_config(env={}).replace(
            data={"dir": str(self.dir)},
            database={"url": self.pg.url(APP_ROLE), "migrate_url": self.pg.url(OWNER_ROLE), "pool_max": 10},
            redis={"url": self.redis.url(), "cluster": not isinstance(self.redis, EmbeddedRedis)},
            gateway={"port": free_port(), "metrics_port": free_port()},
            engine={"metrics_port": free_port()},
            auth={"jwt_private_keys": f"{self.secrets.jwt_key_id}={self.secrets.jwt_private_key_path(self.dir)}",
                  "encryption_keys": f"{self.secrets.encryption_key_id}={self.secrets.encryption_key}"},
            log={"format": "json", "level": "warning"},
        )

    def stop(self) -> None:
        self.redis.stop()
        self.pg.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
