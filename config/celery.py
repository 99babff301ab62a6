"""The Celery configuration, derived from Settings; each choice says why in one line."""

from __future__ import annotations

import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

import redis

from config.settings import Settings

__all__ = ["HOUSEKEEPING_QUEUE", "ROTATION_QUEUE", "celery_config"]

#: Rotations and housekeeping (scheduling, retirement) on separate queues, so a fleet
#: rotation never delays the beat's due scan; one worker consumes both by default.
ROTATION_QUEUE = "rotations"
HOUSEKEEPING_QUEUE = "housekeeping"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for the worker, beat and Flower (see celery-and-style.md A2/A8)."""
    guard_channel_teardown()
    c = settings.celery
    visibility: dict[str, Any] = {"visibility_timeout": int(c.visibility_timeout)}
    broker_options = {
        **visibility,
        # kombu 5.7 sweeps for overdue unacked messages every interval x throttle seconds
        # (10 x 10 by default): sweep every min(10 s, timeout / 4) instead, so a message held
        # by a killed worker comes back soon after the visibility timeout, not 100 s later.
        "unacked_restore_interval": max(1, min(10, int(c.visibility_timeout) // 4)),
        "unacked_restore_throttle": 1,
    }
    backend_options: dict[str, Any] = dict(visibility)
    sentinel = _sentinel_options(settings)
    broker_options.update(sentinel)
    backend_options.update(sentinel)
    tls = _tls_options(settings.redis_dsn)
    return {
        **tls,
        # For Sentinel, both take the ;-separated sentinel:// list as it is (kombu's
        # SentinelTransport, Celery's SentinelBackend) and find the primary by master_name.
        "broker_url": settings.redis_dsn,
        "result_backend": settings.redis_dsn,
        # Only JSON on the wire: pickle from a shared broker is remote code execution.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # Ack after the task returns: a worker killed mid-rotation leaves the message to redeliver.
        "task_acks_late": True,
        # ...and a pool child killed by SIGKILL/OOM requeues instead of acking (tasks idempotent).
        "task_reject_on_worker_lost": True,
        # One reserved message per slot: nothing sits prefetched in a worker that dies.
        "worker_prefetch_multiplier": 1,
        # Soft < hard < visibility timeout: a running task is never redelivered while it runs.
        "task_soft_time_limit": c.soft_time_limit,
        "task_time_limit": c.time_limit,
        "broker_transport_options": broker_options,
        "result_backend_transport_options": backend_options,
        # Keep retrying the broker at start (compose starts Redis and the worker together).
        "broker_connection_retry_on_startup": True,
        # A late-ack task whose broker connection dropped would run twice: cancel it instead.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # Task events on, so Flower sees every task (sent, started, succeeded, retried...).
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        # Results are ids and outcomes only; nobody needs them for long.
        "task_ignore_result": False,
        "result_expires": int(c.result_expires),
        "result_extended": False,  # would copy task args into the backend
        # Recycle pool children now and then: cheap insurance against slow leaks.
        "worker_max_tasks_per_child": c.max_tasks_per_child,
        "worker_max_memory_per_child": 400_000,  # KiB
        # Health checks on idle Redis connections so a dead socket is noticed.
        "redis_backend_health_check_interval": 30,
        "redis_socket_keepalive": True,
        "broker_heartbeat": 0,
        "task_default_queue": ROTATION_QUEUE,
        "task_routes": {
            "rotate_destination": {"queue": ROTATION_QUEUE},
            "enqueue_due": {"queue": HOUSEKEEPING_QUEUE},
            "retire_due": {"queue": HOUSEKEEPING_QUEUE},
            "watch_environment": {"queue": HOUSEKEEPING_QUEUE},
        },
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
        "enable_utc": True,
    }


_guard_lock = threading.Lock()
_guarded = False


def guard_channel_teardown() -> None:
    """Keep a worker alive when its broker connection dies abruptly (kombu/celery 5.7).

    A primary killed by a failover (or any Redis killed mid-``BRPOP``) makes the consumer
    first ``collect()`` the connection (which detaches the transport) and then close it
    again; that second close restores unacked messages through a pool rebuilt from the
    detached transport and raises ``AttributeError: 'NoneType' object has no attribute
    'hostname'``, which Celery treats as unrecoverable: the worker exits. Here a channel
    whose transport is detached raises redis's ConnectionError instead, which that close
    path already ignores: the worker reconnects (to the new primary), and the messages it
    held come back after the visibility timeout, as for any lost connection.
    """
    global _guarded  # noqa: PLW0603 - one patch per process
    with _guard_lock:
        if _guarded:
            return
        from kombu.transport import redis as kombu_redis

        original: Any = kombu_redis.Channel._connparams

        def _connparams(channel: Any, asynchronous: bool = False) -> Any:
            transport = channel.connection
            if transport is None or transport.client is None:
                raise redis.ConnectionError("broker connection already closed")
            return original(channel, asynchronous)

        setattr(kombu_redis.Channel, "_connparams", _connparams)  # noqa: B010
        _guarded = True


def _sentinel_options(settings: Settings) -> dict[str, Any]:
    """For ``sentinel://``: which primary to ask the sentinels for, and how to log in to
    them (the primary's own password stays in the URL, as for ``redis://``)."""
    target = settings.sentinel_target
    if target is None:
        return {}
    # The same timeouts as the service's own Sentinel client (worker/store/connection.py).
    sentinel_kwargs: dict[str, Any] = {
        "socket_connect_timeout": 5,
        "socket_timeout": 5,
        "socket_keepalive": True,
    }
    if target.sentinel_password:
        sentinel_kwargs["password"] = target.sentinel_password
    return {"master_name": target.master_name, "sentinel_kwargs": sentinel_kwargs}


def _tls_options(url: str) -> dict[str, Any]:
    """For ``rediss://``: verify the server certificate unless the URL says otherwise.

    Celery refuses a ``rediss://`` result backend URL without ``ssl_cert_reqs``; redis-py
    (the service's own client) verifies by default, so Celery is told to do the same.
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss" or "ssl_cert_reqs" in parts.query:
        return {}
    required = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    return {"broker_use_ssl": required, "redis_backend_use_ssl": required}
