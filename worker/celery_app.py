"""The Celery app, built from Settings, and the per-process Runtime its tasks use."""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
import time
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_process_shutdown, worker_ready, worker_shutdown

from config.celery import celery_config
from config.settings import Settings
from worker.lifecycle import attach_lifecycle
from worker.runtime import Runtime
from worker.store.connection import open_redis
from worker.store.keys import Keys

__all__ = ["TASK_MODULES", "create_app", "runtime_for"]

#: Modules whose tasks the app registers.
TASK_MODULES = ("tasks.rotation", "tasks.scheduling", "tasks.retirement", "tasks.watch")

_lock = threading.Lock()
_runtimes: dict[tuple[int, int], Runtime] = {}


def create_app(settings: Settings) -> Celery:
    """A Celery app configured from ``settings``; tasks come from :data:`TASK_MODULES`."""
    app = Celery("rotator", set_as_current=True)
    app.conf.update(celery_config(settings))
    app.conf.rotator_settings = settings
    for module in TASK_MODULES:  # a missing task module is an import error at start
        importlib.import_module(module)
    return app


def settings_of(app: Any) -> Settings:
    """The Settings the app was built from."""
    settings = app.conf.get("rotator_settings")
    if not isinstance(settings, Settings):
        raise RuntimeError("Celery app was not built by worker.celery_app.create_app")
    return settings


def runtime_for(app: Any) -> Runtime:
    """This process's Runtime for ``app`` (built on first use, after any fork)."""
    key = (os.getpid(), id(app))
    runtime = _runtimes.get(key)
    if runtime is None:
        with _lock:
            runtime = _runtimes.get(key)
            if runtime is None:
                settings = settings_of(app)
                runtime = Runtime.build(settings)
                attach_lifecycle(runtime)
                _runtimes[key] = runtime
    return runtime


@worker_shutdown.connect  # type: ignore[untyped-decorator]
@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _flush_metrics(**_: Any) -> None:
    """Write this process's pending metric increments before it exits."""
    for (pid, _app), runtime in list(_runtimes.items()):
        if pid == os.getpid() and runtime.metrics is not None:
            runtime.metrics.flush()


#: Heartbeats: every worker process says it is alive this often (``rotator_workers_up``).
HEARTBEAT_SECONDS = 15.0
_heartbeat_stop = threading.Event()


@worker_ready.connect  # type: ignore[untyped-decorator]
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    """Refresh ``<prefix>:worker:<hostname>`` (TTL three beats) until the worker stops."""
    app = getattr(sender, "app", None)
    if app is None:
        return
    settings = settings_of(app)
    client = open_redis(settings)
    key = Keys(settings.key_prefix).worker(f"{sender.hostname}:{os.getpid()}")

    def beat() -> None:
        while True:
            # Redis away: the heartbeat lapses, which is what it should say.
            with contextlib.suppress(redis.RedisError):
                client.set(key, repr(time.time()), ex=int(HEARTBEAT_SECONDS * 3))
            if _heartbeat_stop.wait(HEARTBEAT_SECONDS):
                with contextlib.suppress(redis.RedisError):
                    client.delete(key)
                return

    threading.Thread(target=beat, name="worker-heartbeat", daemon=True).start()


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _stop_heartbeat(**_: Any) -> None:
    _heartbeat_stop.set()
