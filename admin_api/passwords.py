"""Password hashing: bcrypt over a SHA-256 pre-hash, off the event loop.

``bcrypt(base64(sha256(password)))``: the pre-hash makes every password 44 bytes, so passwords
longer than bcrypt's 72-byte limit keep all their entropy (and bcrypt 5 no longer refuses
them); base64 keeps NUL bytes out of bcrypt's input.  Cost is ``auth.bcrypt_cost`` (>= 12).

bcrypt takes ~250 ms at cost 12: it runs in a small dedicated thread pool so the loop never
blocks and a login storm cannot starve the default executor.  When an account does not
exist, :meth:`PasswordHasher.verify` still runs bcrypt against a dummy hash of the same cost,
so the answer takes as long as for a wrong password.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from concurrent.futures import ThreadPoolExecutor

import bcrypt

MIN_COST = 12
MIN_LENGTH = 10
MAX_LENGTH = 1024


def prehash(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest())


def hash_password_sync(password: str, cost: int) -> str:
    if cost < MIN_COST:
        raise ValueError(f"bcrypt cost must be at least {MIN_COST}")
    return bcrypt.hashpw(prehash(password), bcrypt.gensalt(cost)).decode()


def verify_password_sync(password: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(prehash(password), hashed.encode())
    except ValueError:
        return False  # not a bcrypt hash


def password_problem(password: str, email: str = "") -> str | None:
    """Why a new password is refused (None = fine).  Length is what matters (NIST 800-63B)."""
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    if len(set(password)) < 4:
        return "is too repetitive"
    if email and password.strip().lower() == email.strip().lower():
        return "must not be your email address"
    return None


class PasswordHasher:
    def __init__(self, cost: int, threads: int = 2) -> None:
        if cost < MIN_COST:
            raise ValueError(f"bcrypt cost must be at least {MIN_COST}")
        self.cost = cost
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bcrypt")
        self._dummy: str | None = None

    async def start(self) -> None:
        self._dummy = await self.hash(secrets.token_urlsafe(24))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._pool, hash_password_sync, password, self.cost)

    async def verify(self, password: str, hashed: str | None) -> bool:
        """True only for the right password; with ``hashed=None`` (no such account) bcrypt still runs."""
        target = hashed if hashed is not None else self._dummy
        if target is None:
            raise RuntimeError("PasswordHasher.start() was not awaited")
        ok = await asyncio.get_running_loop().run_in_executor(self._pool, verify_password_sync, password, target)
        return ok and hashed is not None

    def needs_rehash(self, hashed: str) -> bool:
        try:
            return int(hashed.split("$")[2]) < self.cost
        except (IndexError, ValueError):
            return True
