"""The one way the service opens Redis: decoded strings, timeouts, keepalive, health checks.

With a ``sentinel://`` URL the client is redis-py's own Sentinel-managed one: it asks the
sentinels where the primary is before each new connection, and a failover is followed by
redis-py itself (connections to the old primary drop, the next one goes to the new one).
"""

from __future__ import annotations

from typing import Any

import redis
from redis.sentinel import Sentinel

from config.settings import SentinelTarget, Settings
from worker.errors import RotatorError, UsageError

__all__ = ["open_redis", "open_redis_checked"]

#: The same for every connection this service opens to Redis (and to the sentinels).
_CONNECTION_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 5,
    "socket_timeout": 30,
    "socket_keepalive": True,
    "health_check_interval": 30,
    "retry_on_timeout": True,
}
#: A sentinel answers ``SENTINEL MASTERS`` at once; one that takes longer is skipped.
SENTINEL_SOCKET_TIMEOUT = 5


def open_redis(settings: Settings) -> redis.Redis:
    """A client for ``ROTATOR_REDIS_URL`` (no connection is made until first use): the
    current primary when that names sentinels."""
    target = settings.sentinel_target
    if target is not None:
        return _sentinel_primary(target)
    return redis.Redis.from_url(settings.redis_dsn, decode_responses=True, **_CONNECTION_OPTIONS)


def _sentinel_primary(target: SentinelTarget) -> redis.Redis:
    sentinel_options: dict[str, Any] = {
        "socket_connect_timeout": _CONNECTION_OPTIONS["socket_connect_timeout"],
        "socket_timeout": SENTINEL_SOCKET_TIMEOUT,
        "socket_keepalive": True,
    }
    if target.sentinel_password:
        sentinel_options["password"] = target.sentinel_password
    sentinels = list(target.sentinels)
    # redis.sentinel has no annotations.
    sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
    primary: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        target.master_name,
        db=target.db,
        username=target.username,
        password=target.password,
        decode_responses=True,
        **_CONNECTION_OPTIONS,
    )
    return primary


def open_redis_checked(settings: Settings) -> redis.Redis:
    """:func:`open_redis`, checked with PING: a one-line error when Redis is unreachable
    (UsageError for a refused password, RotatorError otherwise)."""
    client = open_redis(settings)
    try:
        client.ping()
    except redis.AuthenticationError:
        client.close()
        raise UsageError("Redis refused the password in ROTATOR_REDIS_URL") from None
    except redis.ConnectionError as exc:
        client.close()
        raise RotatorError(f"cannot reach Redis at ROTATOR_REDIS_URL: {exc}") from None
    return client
