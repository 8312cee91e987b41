"""`convot up --gateways 2 --workers 2`: every process serves /metrics where the scrape targets
written for configs/prometheus.yml say, with its `process` label, and promtool accepts a
Prometheus configuration reading those files (none missing)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from convot.config import REPO_ROOT
from convot.embedded import _set_pdeathsig, free_port
from tests.ops.promtool import promtool

pytestmark = pytest.mark.slow


def port_pair() -> int:
    """A free port whose successor is free too (gateway-2 / engine-2 take base + 1)."""
    for _ in range(200):
        base = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base
    raise RuntimeError("no two consecutive free ports")


def scrape(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.read().decode()
    except OSError:
        return None


def test_up_with_several_processes_is_scraped_through_the_targets_files(servers, tmp_path):
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVOT_")}
    env.update(
        CONVOT_DATA_DIR=str(data_dir), CONVOT_DATABASE_URL=servers.database_url,
        CONVOT_DATABASE_MIGRATE_URL=servers.owner_url, CONVOT_REDIS_URL=servers.redis_url,
        CONVOT_GATEWAY_PORT=str(free_port()), CONVOT_GATEWAY_METRICS_PORT=str(port_pair()),
        CONVOT_ENGINE_METRICS_PORT=str(port_pair()), CONVOT_ADMIN_API_PORT=str(free_port()),
        CONVOT_SMTP_PORT=str(free_port()), CONVOT_EMBEDDED_SMTP_PORT=str(free_port()),
        CONVOT_GATEWAY_DRAIN_SECONDS="1",
    )
    env["CONVOT_ADMIN_API_PUBLIC_URL"] = f"http://127.0.0.1:{env['CONVOT_ADMIN_API_PORT']}"
    # The session's keys: `up` refreshes the shared demo organisation, and a key of its own
    # would leave secrets later tests (the inbox stack) cannot decrypt.
    auth = servers.config().auth
    env.update(CONVOT_AUTH_JWT_PRIVATE_KEYS=auth.jwt_private_keys, CONVOT_AUTH_ENCRYPTION_KEYS=auth.encryption_keys)
    log = open(tmp_path / "up.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "convot.cli", "up", "--gateways", "2", "--workers", "2"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            preexec_fn=_set_pdeathsig)
    try:
        folder = data_dir / "prometheus"
        deadline = time.monotonic() + 90
        while not (folder / "admin-api.json").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "up.log").read_text()[-2000:]
            time.sleep(0.2)
        groups = {job: json.loads((folder / f"{job}.json").read_text()) for job in ("gateway", "engine", "admin-api")}
        processes = {g["labels"]["process"]: g["targets"][0] for gs in groups.values() for g in gs}
        assert sorted(processes) == ["admin-api", "engine-1", "engine-2", "gateway-1", "gateway-2"]
        assert processes["gateway-2"].endswith(str(int(env["CONVOT_GATEWAY_METRICS_PORT"]) + 1))
        assert processes["engine-2"].endswith(str(int(env["CONVOT_ENGINE_METRICS_PORT"]) + 1))
        family = {"gateway": "convot_gateway_connections", "engine": "convot_engine_stream_length",
                  "admin-api": "convot_admin_api_requests_total"}
        for name, target in processes.items():
            expected = family["admin-api" if name == "admin-api" else name.rsplit("-", 1)[0]]
            text = None
            while time.monotonic() < deadline and not (text and expected in text):
                assert proc.poll() is None, (tmp_path / "up.log").read_text()[-2000:]
                text = scrape(f"http://{target}/metrics")
                time.sleep(0.25)
            assert text and expected in text, f"{name} at {target} did not serve {expected}"
        # configs/prometheus.yml, pointed at this data folder: every file it reads exists
        config = (REPO_ROOT / "configs" / "prometheus.yml").read_text().replace("../.convot/", f"{data_dir}/")
        (tmp_path / "prometheus.yml").write_text(config)
        (tmp_path / "alerts.yml").write_text((REPO_ROOT / "configs" / "alerts.yml").read_text())
        checked = promtool("check", "config", str(tmp_path / "prometheus.yml"))
        assert checked.returncode == 0 and "does not exist" not in checked.stdout + checked.stderr, checked.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        log.close()
