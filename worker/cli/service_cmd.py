"""``rotator worker`` and ``rotator beat``: the long-running service processes.

``beat`` syncs the registry (ROTATOR_REGISTRY_PATH) at start, then sends ``enqueue_due``
every ``ROTATOR_SCHEDULER__TICK_SECONDS`` and ``retire_due`` every three ticks.
"""

from __future__ import annotations

import random
import time

import redis
import typer
from celery import Celery

from config.celery import HOUSEKEEPING_QUEUE, ROTATION_QUEUE
from config.registry import load_registry
from config.settings import Settings
from worker.celery_app import create_app
from worker.cli.common import settings_or_exit
from worker.logging import configure_logging, get_logger
from worker.runtime import open_redis_client
from worker.scheduling.store import ScheduleStore
from worker.store.keys import Keys

__all__ = ["register", "sync_registry"]

log = get_logger(__name__)
_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def worker(
    ctx: typer.Context,
    pool: str = typer.Option(None, help="Celery pool (default from ROTATOR_CELERY__POOL)."),
    concurrency: int = typer.Option(None, "--concurrency", "-c", help="Parallel rotations."),
    queues: str = typer.Option(f"{ROTATION_QUEUE},{HOUSEKEEPING_QUEUE}", "--queues", "-Q"),
) -> None:
    """Start a Celery worker for rotations; unknown options are passed to Celery."""
    settings = settings_or_exit(need_redox=True)
    configure_logging(settings.log_format, settings.log_level)
    app = create_app(settings)
    argv = [
        "worker",
        "--pool", pool or settings.celery.pool,
        "--concurrency", str(concurrency or settings.celery.concurrency),
        "--queues", queues,
        "--loglevel", settings.log_level,
        "--task-events",
        *ctx.args,
    ]  # fmt: skip
    app.worker_main(argv=argv)


def sync_registry(settings: Settings) -> str | None:
    """Load the registry file (if configured) into Redis and spread what fell due while
    beat was down over the catch-up period; return the report line."""
    if settings.registry_path is None:
        return None
    registry = load_registry(settings.registry_path)
    client = open_redis_client(settings)
    keys = Keys(settings.key_prefix)
    rng = random.SystemRandom()
    catchup = settings.scheduler.catchup_seconds
    try:
        store = ScheduleStore(client, keys)
        report = store.sync(
            registry.policies(),
            time.time(),
            rng,
            catchup_seconds=catchup,
            last_rotated=lambda ident: _last_success(client, keys, ident),
        )
        store.spread_overdue(time.time(), catchup, rng)
    finally:
        client.close()
    return str(report)


def _last_success(client: redis.Redis, keys: Keys, destination_id: str) -> float | None:
    """When the destination last rotated successfully (its state hash), or None."""
    raw = client.hget(keys.destination(destination_id), "last_success_at")
    try:
        return float(str(raw)) if raw else None
    except ValueError:
        return None


def retire_every(tick_seconds: float) -> float:
    """How often beat runs ``retire_due``: three enqueue ticks (15 s at the default tick)."""
    return max(1.0, tick_seconds * 3)


def beat_app(settings: Settings) -> Celery:
    """The Celery app with the two periodic housekeeping tasks scheduled.

    The tick is ``ROTATOR_SCHEDULER__TICK_SECONDS``. Each message expires after four ticks,
    so a backlog (worker down) never replays a burst of stale ticks.
    """
    app = create_app(settings)
    tick = settings.scheduler.tick_seconds
    retire = retire_every(tick)
    app.conf.beat_schedule = {
        "enqueue-due": {"task": "enqueue_due", "schedule": tick, "options": {"expires": tick * 4}},
        "retire-due": {
            "task": "retire_due",
            "schedule": retire,
            "options": {"expires": retire * 4},
        },
    }
    return app


def beat(ctx: typer.Context) -> None:
    """Start the scheduler: syncs the registry, then enqueues due rotations every tick."""
    settings = settings_or_exit()
    configure_logging(settings.log_format, settings.log_level)
    report = sync_registry(settings)
    if report is not None:
        log.info("registry synced", report=report)
    app = beat_app(settings)
    # Both entries are short intervals, so nothing is worth persisting: the in-memory
    # scheduler needs no shelve file, and two beats (e.g. on one host) cannot clash on one.
    # Running two beats is safe: enqueue_due and retire_due claim entries atomically.
    argv = [
        "beat",
        "--scheduler", "celery.beat:Scheduler",
        "--loglevel", settings.log_level,
        *ctx.args,
    ]  # fmt: skip
    app.start(argv=argv)


def register(app: typer.Typer) -> None:
    """Add ``worker`` and ``beat``."""
    app.command("worker", context_settings=_PASSTHROUGH)(worker)
    app.command("beat", context_settings=_PASSTHROUGH)(beat)
