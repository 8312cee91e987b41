"""Admin API test harness: a real app (real PostgreSQL, Redis, SMTP catch-all) per test module,
clients with their own cookie jars and client IPs, and a whole-session log recorder that
tests/admin_api/test_log_hygiene.py scans for every secret the tests used."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import secrets
import time
import uuid
from dataclasses import dataclass, field

import pytest
import aiohttp
from aiohttp.test_utils import TestServer

from admin_api import keys, totp
from admin_api.app import create_app
from admin_api.passwords import hash_password_sync
from convot.embedded import free_port
from convot.logs import JsonFormatter

PASSWORD = "Correct horse battery staple, 2026!"

# --- whole-session log capture and the secrets used ------------------------------------------

SECRETS: set[str] = set()
LOG_LINES: list[str] = []


def remember(*values: str) -> None:
    """Register values that must never appear in any log line."""
    for value in values:
        if value and len(value) >= 6:
            SECRETS.add(value)


remember(PASSWORD)


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            LOG_LINES.append(self.format(record))
        except Exception:  # a broken record must not break the test run
            LOG_LINES.append(repr(record.__dict__))


@pytest.fixture(scope="session", autouse=True)
def record_logs():
    root = logging.getLogger()
    recorder = _Recorder()
    previous = root.level
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)
    # websockets logs every frame at DEBUG; the services never run it below WARNING
    # (convot/logs.py), but the tests' own websocket clients would write their frames here.
    frames = logging.getLogger("websockets")
    frames_level = frames.level
    frames.setLevel(logging.INFO)
    yield
    frames.setLevel(frames_level)
    root.removeHandler(recorder)
    root.setLevel(previous)


def pytest_collection_modifyitems(session, config, items):
    """The log scan runs after every other test of the session."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/admin_api/test_log_hygiene.py"))


# --- the application --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def api_config(servers):
    return servers.config(smtp={"port": free_port()}, admin_api={"trusted_proxies": "127.0.0.1/32"})


@pytest.fixture(scope="module")
async def api_server(api_config):
    server = TestServer(create_app(api_config))
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
def app(api_server):
    return api_server.app


_ips = itertools.count(1)


def fresh_ip() -> str:
    n = next(_ips) + secrets.randbelow(1 << 16) * 1000
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


@dataclass
class Answer:
    status: int
    body: object
    headers: dict

    @property
    def code(self) -> str | None:
        return self.body["error"]["code"] if isinstance(self.body, dict) and "error" in self.body else None


@dataclass
class Client:
    """One browser: its own cookies, CSRF token and client IP."""

    http: aiohttp.ClientSession
    ip: str
    csrf: str | None = None
    user_id: str | None = None
    email: str | None = None
    extra_headers: dict = field(default_factory=dict)

    async def call(self, method: str, path: str, json=None, *, headers=None, csrf: bool = True, raw=None) -> Answer:
        h = {"X-Forwarded-For": self.ip, **self.extra_headers, **(headers or {})}
        if csrf and self.csrf and method.upper() not in ("GET", "HEAD"):
            h.setdefault("X-CSRF-Token", self.csrf)
        kwargs = {"headers": h}
        if raw is not None:
            kwargs["data"] = raw
        elif json is not None:
            kwargs["json"] = json
        async with self.http.request(method, path, **kwargs) as resp:
            ctype = resp.headers.get("Content-Type", "")
            body = await resp.json() if "json" in ctype else await resp.text()
            return Answer(resp.status, body, dict(resp.headers))

    async def login(self, email: str, password: str = PASSWORD) -> Answer:
        answer = await self.call("POST", "/v1/auth/login", {"email": email, "password": password})
        if answer.status == 200:
            self.csrf = answer.body["csrf_token"]
            self.user_id = answer.body["user_id"]
            self.email = email
            remember(self.csrf, self.session_cookie())
        return answer

    def session_cookie(self) -> str:
        for cookie in self.http.cookie_jar:
            if cookie.key == "convot_session":
                return cookie.value
        return ""

    async def reauth(self, password: str = PASSWORD, code: str | None = None) -> Answer:
        body = {"password": password}
        if code:
            body["code"] = code
        return await self.call("POST", "/v1/auth/reauth", body)


@pytest.fixture
async def client_factory(api_server):
    made: list[aiohttp.ClientSession] = []

    async def make(ip: str | None = None) -> Client:
        http = aiohttp.ClientSession(base_url=str(api_server.make_url("/")),
                                     cookie_jar=aiohttp.CookieJar(unsafe=True))
        made.append(http)
        return Client(http, ip or fresh_ip())

    yield make
    for http in made:
        await http.close()


@pytest.fixture
async def client(client_factory) -> Client:
    return await client_factory()


# --- direct set-up of users and organisations (the API flows have their own tests) -------------

_HASH: list[str] = []


def password_hash() -> str:
    if not _HASH:
        _HASH.append(hash_password_sync(PASSWORD, 12))
    return _HASH[0]


def new_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


@dataclass
class TotpUser:
    secret: bytes
    step_used: int = 0

    def code(self) -> str:
        """A valid code for a step not used yet: the current step, else the next (within the ±1 window)."""
        now = totp.step_at(time.time())
        step = max(now, self.step_used + 1)
        assert step <= now + 1, "no unused TOTP step left in the window"
        self.step_used = step
        value = totp.hotp(self.secret, step)
        remember(value)
        return value


async def make_user(app, email: str | None = None, *, verified: bool = True, name: str = "Test User",
                    mfa: bool = False) -> tuple[uuid.UUID, str, TotpUser | None]:
    email = email or new_email()
    pool = app[keys.DB]
    user_id = uuid.uuid4()
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO users (id, email, password_hash, name, email_verified_at) VALUES ($1, $2, $3, $4, $5)",
            user_id, email, password_hash(), name, dt.datetime.now(dt.timezone.utc) if verified else None)
        helper = None
        if mfa:
            from admin_api.mfa import totp_aad

            secret = totp.generate_secret()
            remember(totp.secret_to_base32(secret))
            blob = app[keys.ENCRYPTOR].encrypt(secret, totp_aad(user_id))
            await conn.execute("UPDATE users SET totp_secret_enc = $2, totp_enabled_at = now() WHERE id = $1",
                               user_id, blob)
            helper = TotpUser(secret)
    return user_id, email, helper


async def make_org(app, owner_id: uuid.UUID, name: str = "Org") -> uuid.UUID:
    from convot.db import scoped

    org_id = uuid.uuid4()
    async with scoped(app[keys.DB], org_id=org_id, user_id=owner_id) as conn:
        await conn.execute("INSERT INTO organisations (id, name, super_owner_id) VALUES ($1, $2, $3)", org_id, name, owner_id)
        await conn.execute("INSERT INTO members (org_id, user_id, role) VALUES ($1, $2, 'owner')", org_id, owner_id)
    return org_id


async def add_member(app, org_id: uuid.UUID, user_id: uuid.UUID, role: str, overrides: dict | None = None) -> None:
    from convot.db import scoped

    async with scoped(app[keys.DB], org_id=org_id) as conn:
        await conn.execute("INSERT INTO members (org_id, user_id, role, overrides) VALUES ($1, $2, $3, $4)",
                           org_id, user_id, role, overrides or {})


async def signed_in(client_factory, app, *, mfa: bool = False, email: str | None = None):
    """A new verified user, signed in (past the MFA step when ``mfa``): (client, user_id, totp helper)."""
    user_id, email, helper = await make_user(app, email, mfa=mfa)
    c = await client_factory()
    answer = await c.login(email)
    assert answer.status == 200, answer.body
    if mfa:
        verified = await c.call("POST", "/v1/auth/mfa", {"code": helper.code()})
        assert verified.status == 200, verified.body
        c.csrf = verified.body["csrf_token"]
        remember(c.csrf, c.session_cookie())
    return c, user_id, helper


async def wait_for_mail(app, to: str, subject_part: str, timeout: float = 10.0):
    server = app[keys.CATCH_ALL]
    return await server.wait_for(lambda m: to in m.to and subject_part in m.subject, timeout)


def token_from(mail) -> str:
    import re

    match = re.search(r"#token=([A-Za-z0-9_-]+)", mail.text)
    assert match, "no token link in the mail"
    remember(match.group(1))
    return match.group(1)
