"""End-to-end harness for the inbox: the real services as processes (admin API, gateway, engine
worker, exactly as `convot up` runs them) against the session's PostgreSQL and Redis, the demo
organisation of `convot demo`, and real headless Chromium driven by Playwright.

The services run as child processes so a test can stop and restart the gateway like a deploy
or a crash, and so the browser's long-lived sockets never belong to the test's event loop.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from convot.config import Config
from convot.embedded import _set_pdeathsig, free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--font-render-hinting=none"]
SERVICES = {"admin-api": "admin-api", "gateway": "gateway", "engine": "engine"}


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/inbox/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@dataclass
class Stack:
    config: Config
    env: dict[str, str]
    logs: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    demo: dict = field(default_factory=dict)

    @property
    def api(self) -> str:
        return self.config.admin_api.public_url.rstrip("/")

    def start(self, name: str) -> None:
        log = open(self.logs / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "convot.cli", SERVICES[name]], env=self.env,
                                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=_set_pdeathsig)   # never outlives a killed test run
        log.close()

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)

    async def wait_ready(self, name: str, timeout: float = 30.0) -> None:
        urls = {"admin-api": f"{self.api}/healthz",
                "gateway": f"http://127.0.0.1:{self.config.gateway.port}/healthz",
                "engine": f"http://127.0.0.1:{self.config.engine.metrics_port}/metrics"}
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if not self.alive(name):
                    raise RuntimeError(f"{name} exited:\n{self.log_tail()}")
                try:
                    async with http.get(urls[name], timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} not ready after {timeout}s:\n{self.log_tail()}")
                await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def stack_extra():
    """Extra config sections for a module's stack (e.g. a fake third-party API's base URL)."""
    return {}


@pytest.fixture(scope="module")
async def stack(servers, stack_extra):
    from convot.demo import create_demo

    data = Path(tempfile.mkdtemp(prefix="convot-inbox-"))
    api_port, gateway_port = free_port(), free_port()
    cfg = servers.config(
        data={"dir": str(data)},
        gateway={"port": gateway_port, "metrics_port": free_port(), "drain_seconds": 2.0},
        engine={"metrics_port": free_port()},
        smtp={"port": free_port()},
        # Short member tokens: every inbox refreshes its token in-band during the tests.
        auth={"agent_token_ttl": 30},
        data_rights={"poll_interval": 0.5},
        webhooks={"poll_interval": 0.2},
        admin_api={"port": api_port, "public_url": f"http://127.0.0.1:{api_port}",
                   "gateway_public_url": f"ws://127.0.0.1:{gateway_port}", "development": True},
        log={"format": "json", "level": "info"}, **stack_extra)
    s = Stack(cfg, servers.env(cfg), data)
    s.demo = await create_demo(cfg)
    await _allow_origin(servers.owner_url, s.demo, s.api)
    try:
        for name in ("engine", "gateway", "admin-api"):
            s.start(name)
        for name in ("engine", "gateway", "admin-api"):
            await s.wait_ready(name)
        yield s
    finally:
        for name in list(s.procs):
            s.stop(name)
        shutil.rmtree(data, ignore_errors=True)


async def _allow_origin(owner_url: str, demo: dict, origin: str) -> None:
    """The demo organisation outlives a module (one database per session) but each module's
    admin API has its own port: its origin must be one the demo app's widget may open from."""
    import asyncpg

    from convot.db import _init_connection

    conn = await asyncpg.connect(owner_url)
    await _init_connection(conn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('convot.org_id', $1, true)", demo["org_id"])
            await conn.execute("UPDATE apps SET allowed_origins = array_append(array_remove(allowed_origins, $2), $2) "
                               "WHERE org_id = $1 AND public_key = $3", uuid.UUID(demo["org_id"]), origin, demo["app_id"])
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=os.environ.get("CONVOT_TEST_CHROMIUM", "/usr/bin/chromium"), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


class Browsers:
    """Fresh browser contexts (own cookies and storage) that fail the test on page errors,
    console CSP violations or dialogs (an `alert` from a message would be one)."""

    def __init__(self, browser):
        self.browser = browser
        self.contexts = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []

    async def new(self, **options):
        ctx = await self.browser.new_context(viewport={"width": 1360, "height": 860}, device_scale_factor=1,
                                             reduced_motion="reduce", locale="en-GB", timezone_id="UTC", **options)
        ctx.set_default_timeout(15_000)

        def watch(page):
            page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
            page.on("console", lambda msg: self.errors.append(f"{page.url}: {msg.text}")
                    if msg.type == "error" and "Content Security Policy" in msg.text else None)

            async def dismiss(dialog):
                self.dialogs.append(dialog.message)
                await dialog.dismiss()

            page.on("dialog", dismiss)

        ctx.on("page", watch)
        self.contexts.append(ctx)
        return ctx


@pytest.fixture
async def browsers(browser):
    b = Browsers(browser)
    yield b
    for ctx in b.contexts:
        await ctx.close()
    assert not b.dialogs, f"dialogs opened: {b.dialogs}"
    assert not b.errors, f"errors in the pages: {b.errors}"


def unique_email(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"
