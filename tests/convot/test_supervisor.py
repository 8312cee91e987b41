"""`convot up` end to end: embedded servers, every service healthy, clean stop, data kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from convot.embedded import _set_pdeathsig, free_port

pytestmark = pytest.mark.slow


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVOT_")}
    gw_metrics, engine_metrics = free_port(), free_port()
    env.update(
        CONVOT_DATA_DIR=str(data_dir),
        CONVOT_EMBEDDED_POSTGRES_PORT=str(free_port()),
        CONVOT_EMBEDDED_REDIS_PORT=str(free_port()),
        CONVOT_EMBEDDED_SMTP_PORT=str(free_port()),
        CONVOT_GATEWAY_PORT=str(free_port()),
        CONVOT_GATEWAY_METRICS_PORT=str(gw_metrics),
        CONVOT_ENGINE_METRICS_PORT=str(engine_metrics),
        CONVOT_ADMIN_API_PORT=str(free_port()),
        CONVOT_SMTP_PORT=str(free_port()),
        CONVOT_GATEWAY_DRAIN_SECONDS="1",
    )
    env["CONVOT_ADMIN_API_PUBLIC_URL"] = f"http://127.0.0.1:{env['CONVOT_ADMIN_API_PORT']}"
    env["CONVOT_ADMIN_API_GATEWAY_PUBLIC_URL"] = f"ws://127.0.0.1:{env['CONVOT_GATEWAY_PORT']}"
    return env


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read()
    except OSError:
        return 0, b""


def _wait_for(url: str, proc: subprocess.Popen, timeout: float = 60) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"convot up exited early with {proc.returncode}"
        status, body = _get(url)
        if status == 200:
            return body
        time.sleep(0.25)
    raise AssertionError(f"{url} did not answer 200 within {timeout}s")


def _server_processes(data_dir: Path) -> list[str]:
    """postgres / redis-server processes working on this data folder."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(data_dir) in cmdline and ("postgres" in cmdline or "redis-server" in cmdline):
            found.append(f"{pid}: {cmdline}")
    return found


def _start(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "convot.cli", "up"], env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
        preexec_fn=_set_pdeathsig,       # never outlives a killed test run
    )


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    return proc.wait(60)


def _owner_sql(data_dir: Path, port: str, sql: str) -> str:
    from convot.embedded import DevSecrets, EmbeddedPostgres

    pg = EmbeddedPostgres(data_dir, int(port), DevSecrets.load_or_create(data_dir))
    return pg.psql(sql, database="convot")


def test_up_runs_everything_stops_cleanly_and_keeps_data(tmp_path):
    data_dir = tmp_path / "data"
    env = _env(data_dir)
    log = tmp_path / "up.log"
    api = env["CONVOT_ADMIN_API_PUBLIC_URL"]
    proc = _start(env, log)
    try:
        assert json.loads(_wait_for(f"{api}/healthz", proc))["status"] == "ok"
        assert b"# TYPE" in _wait_for(f"{api}/metrics", proc)
        assert b"# TYPE" in _wait_for(f"http://127.0.0.1:{env['CONVOT_GATEWAY_METRICS_PORT']}/metrics", proc)
        assert b"# TYPE" in _wait_for(f"http://127.0.0.1:{env['CONVOT_ENGINE_METRICS_PORT']}/metrics", proc)
        output = log.read_text()
        assert api in output and "Press Ctrl-C to stop" in output
        assert _server_processes(data_dir), "expected embedded postgres and redis to be running"
        _owner_sql(data_dir, env["CONVOT_EMBEDDED_POSTGRES_PORT"],
                   "INSERT INTO users (email, password_hash) VALUES ('kept@example.com', 'x')")
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()[-3000:]
    assert _server_processes(data_dir) == [], "Ctrl-C left servers behind"

    proc = _start(env, log)
    try:
        _wait_for(f"{api}/healthz", proc)
        kept = _owner_sql(data_dir, env["CONVOT_EMBEDDED_POSTGRES_PORT"],
                          "SELECT count(*) FROM users WHERE email = 'kept@example.com'")
        assert kept.strip() == "1"
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()[-3000:]
    assert _server_processes(data_dir) == []


def test_bad_config_stops_startup_with_one_line_naming_the_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVOT_")}
    env["CONVOT_GATEWAY_PORT"] = "abc"
    for command in ("up", "gateway", "migrate"):
        result = subprocess.run([sys.executable, "-m", "convot.cli", command], env=env, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "gateway.port" in lines[0] and "CONVOT_GATEWAY_PORT" in lines[0], result.stderr


def test_service_alone_needs_its_urls(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVOT_")}
    result = subprocess.run([sys.executable, "-m", "convot.cli", "gateway"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "database.url" in result.stderr and "CONVOT_DATABASE_URL" in result.stderr
