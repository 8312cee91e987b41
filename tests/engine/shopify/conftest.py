"""Fixtures of the Shopify tests: an organisation, the fake Partner API, settings, a cipher."""

import os
import uuid

import aiohttp
import pytest

from convot.crypto import Encryptor
from tests.fakes.shopify_partner import FakePartnerApi


async def make_org(owner_db, name: str = "Acme Apps") -> uuid.UUID:
    org_id, user_id = uuid.uuid4(), uuid.uuid4()
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", str(org_id))
        await owner_db.execute("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, 'x')",
                               user_id, f"{user_id}@example.com")
        await owner_db.execute("INSERT INTO organisations (id, name, super_owner_id) VALUES ($1, $2, $3)",
                               org_id, name, user_id)
        await owner_db.execute("INSERT INTO members (org_id, user_id, role) VALUES ($1, $2, 'owner')", org_id, user_id)
    return org_id


@pytest.fixture
async def org(owner_db) -> uuid.UUID:
    return await make_org(owner_db)


@pytest.fixture
async def fake():
    api = FakePartnerApi()
    async with api:
        yield api


@pytest.fixture
def shopify_config(servers, fake):
    return servers.config(shopify={
        "api_base": fake.base_url, "page_size": 3, "requests_per_second": 1000.0, "max_backoff": 0.01,
        "retry_base": 1.0, "request_timeout": 5.0,
    })


@pytest.fixture
def settings(shopify_config):
    return shopify_config.shopify


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def encryptor() -> Encryptor:
    return Encryptor([("test1", os.urandom(32))])

