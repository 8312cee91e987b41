"""Fixtures of the engine tests; servers, pools and clients are tests/conftest.py's."""

from urllib.parse import urlparse, urlunparse

import pytest


def _on_db(url: str, db: int) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{db}"))


@pytest.fixture
def other_db():
    """``other_db(url, n)``: the same Redis server, database ``n``: a keyspace of the test's own,
    for a test that destroys groups or flushes everything without disturbing the others."""
    return _on_db
