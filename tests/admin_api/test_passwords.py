"""Password hashing: bcrypt cost >= 12 over a SHA-256 pre-hash (so > 72 bytes works), off the loop."""

import asyncio

import pytest

from admin_api.passwords import PasswordHasher, password_problem, prehash, verify_password_sync

# 100 bytes whose difference lies beyond bcrypt's 72-byte limit
LONG = "p" * 80 + "ä" * 10          # 80 + 20 = 100 bytes
LONG_OTHER = "p" * 80 + "ö" * 10


def test_prehash_is_44_bytes_whatever_the_length():
    assert len(prehash(LONG.encode().decode())) == 44
    assert len(LONG.encode()) == 100
    assert prehash(LONG) != prehash(LONG_OTHER)


async def test_a_100_byte_password_round_trips_and_its_tail_matters():
    hasher = PasswordHasher(12)
    try:
        await hasher.start()
        hashed = await hasher.hash(LONG)
        assert hashed.startswith("$2b$12$")
        assert await hasher.verify(LONG, hashed)
        assert not await hasher.verify(LONG_OTHER, hashed)  # differs only after byte 72
        assert not hasher.needs_rehash(hashed)
    finally:
        hasher.close()


async def test_unknown_account_still_runs_bcrypt_and_never_succeeds():
    hasher = PasswordHasher(12)
    try:
        await hasher.start()
        # a concurrent tick proves the loop stays free while bcrypt runs in the pool
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        try:
            assert await hasher.verify("anything", None) is False
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
        assert ticks > 0
    finally:
        hasher.close()


def test_cost_below_12_is_refused():
    with pytest.raises(ValueError):
        PasswordHasher(11)


def test_not_a_bcrypt_hash_verifies_false():
    assert verify_password_sync("x", "not-a-hash") is False


@pytest.mark.parametrize("password, ok", [
    ("short", False), ("aaaaaaaaaaaaaaa", False), ("ana@example.com", False), ("a fine passphrase", True),
    ("x" * 1025, False),
])
def test_password_policy(password, ok):
    assert (password_problem(password, "ana@example.com") is None) is ok
