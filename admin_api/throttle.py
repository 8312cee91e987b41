"""Brute-force and abuse throttles in Redis (sliding windows, ``lua/throttle.lua``).

A :class:`Limit` is a named budget (``limit`` events per ``window`` seconds); a throttle key is
a limit plus a subject (an account's email, a user id, a client IP).  Subjects are hashed
before they become Redis keys, so Redis holds no email address or IP in clear.  Several keys
are checked or updated in one atomic script call.

Login and MFA count *failures* (``peek`` before, ``add`` after a failure); reset and sign-up
count *requests* (``hit``).  Reset limits are separate keys from login limits, so locking an
account's login never locks its owner out of password reset.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from pathlib import Path

from admin_api.errors import ApiError
from convot.metrics import count_rate_limited

_SCRIPT = (Path(__file__).parent / "lua" / "throttle.lua").read_text()


@dataclass(frozen=True)
class Limit:
    name: str
    limit: int
    window: int  # seconds


@dataclass(frozen=True)
class Limits:
    login_account: Limit
    login_ip: Limit
    mfa_user: Limit
    mfa_ip: Limit
    reset_account: Limit
    reset_ip: Limit
    reset_confirm_ip: Limit
    signup_ip: Limit
    token_ip: Limit

    @classmethod
    def from_config(cls, config) -> "Limits":
        a = config.admin_api
        return cls(
            login_account=Limit("login_account", a.login_account_limit, a.login_window),
            login_ip=Limit("login_ip", a.login_ip_limit, a.login_window),
            mfa_user=Limit("mfa_user", a.mfa_user_limit, a.mfa_window),
            mfa_ip=Limit("mfa_ip", a.mfa_ip_limit, a.mfa_window),
            reset_account=Limit("reset_account", a.reset_account_limit, a.reset_window),
            reset_ip=Limit("reset_ip", a.reset_ip_limit, a.reset_window),
            reset_confirm_ip=Limit("reset_confirm_ip", a.reset_ip_limit * 3, a.reset_window),
            signup_ip=Limit("signup_ip", a.signup_ip_limit, 3600),
            # wrong single-use tokens (verification, invites) per IP
            token_ip=Limit("token_ip", 30, 900),
        )


def throttle_key(limit: Limit, subject: str) -> str:
    digest = hashlib.sha256(f"{limit.name}\x00{subject}".encode()).hexdigest()[:40]
    # one hash tag: every throttle key lives in one Redis Cluster slot, so a script may take several
    return f"cv:{{throttle}}:{limit.name}:{digest}"


def rate_limited(wait_ms: int, limit: "Limit", *more: "Limit") -> ApiError:
    """The 429 answer; counted in ``convot_rate_limited_total{limit=<names of the limits checked>}``."""
    count_rate_limited(limit.name, *(m.name for m in more))
    seconds = max(1, math.ceil(wait_ms / 1000))
    return ApiError("rate_limited", details={"retry_after": seconds}, headers={"Retry-After": str(seconds)})


class Throttle:
    def __init__(self, redis) -> None:
        self._redis = redis
        self._script = redis.register_script(_SCRIPT)

    async def _run(self, mode: str, pairs: list[tuple[Limit, str]]) -> int:
        keys = [throttle_key(limit, subject) for limit, subject in pairs]
        args: list[object] = [mode, secrets.token_hex(8)]
        for limit, _ in pairs:
            args += [limit.limit, limit.window * 1000]
        return int(await self._script(keys=keys, args=args))

    async def peek(self, *pairs: tuple[Limit, str]) -> int:
        """Milliseconds to wait before one more event is allowed on every key (0 = allowed now)."""
        return await self._run("peek", list(pairs))

    async def hit(self, *pairs: tuple[Limit, str]) -> int:
        """Record one event if every key allows it; else change nothing and answer the wait."""
        return await self._run("hit", list(pairs))

    async def add(self, *pairs: tuple[Limit, str]) -> None:
        await self._run("add", list(pairs))

    async def clear(self, *pairs: tuple[Limit, str]) -> None:
        await self._run("clear", list(pairs))

    async def check(self, *pairs: tuple[Limit, str]) -> None:
        """Raise 429 ``rate_limited`` (with Retry-After) when any key is spent."""
        wait = await self.peek(*pairs)
        if wait:
            raise rate_limited(wait, *(limit for limit, _ in pairs))

    async def guard(self, pairs: tuple[tuple[Limit, str], ...], count_refusal: tuple[Limit, str]) -> None:
        """Like :meth:`check`, but a refused attempt still counts against ``count_refusal``
        (the client IP): an address that keeps hammering a locked account stays locked itself."""
        wait = await self.peek(*pairs)
        if wait:
            await self.add(count_refusal)
            raise rate_limited(wait, *(limit for limit, _ in pairs))

    async def take(self, *pairs: tuple[Limit, str]) -> None:
        """Spend one event on every key, or raise 429."""
        wait = await self.hit(*pairs)
        if wait:
            raise rate_limited(wait, *(limit for limit, _ in pairs))
