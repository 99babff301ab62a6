"""``rotator worker`` and ``rotator beat``: the long-running service processes."""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

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
    """Load the registry file (if configured) into Redis; return the report line."""
    if settings.registry_path is None:
        return None
    registry = load_registry(settings.registry_path)
    client = open_redis_client(settings)
    try:
        store = ScheduleStore(client, Keys(settings.key_prefix))
        report = store.sync(
            registry.policies(),
            time.time(),
            random.SystemRandom(),
            catchup_seconds=settings.scheduler.catchup_seconds,
        )
        store.spread_overdue(time.time(), settings.scheduler.catchup_seconds, random.SystemRandom())
    finally:
        client.close()
    return str(report)


def beat_app(settings: Settings) -> Celery:
    """The Celery app with the two periodic housekeeping tasks scheduled."""
    app = create_app(settings)
    tick = settings.scheduler.tick_seconds
    app.conf.beat_schedule = {
        "enqueue-due": {"task": "enqueue_due", "schedule": tick, "options": {"expires": tick * 4}},
        "retire-due": {
            "task": "retire_due",
            "schedule": max(tick, 15.0),
            "options": {"expires": max(tick, 15.0) * 4},
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
    schedule_file = Path(tempfile.gettempdir()) / f"rotator-beat-{settings.key_prefix}"
    argv = [
        "beat",
        "--scheduler", "celery.beat:PersistentScheduler",
        "--schedule", str(schedule_file),
        "--loglevel", settings.log_level,
        *ctx.args,
    ]  # fmt: skip
    app.start(argv=argv)


def register(app: typer.Typer) -> None:
    """Add ``worker`` and ``beat``."""
    app.command("worker", context_settings=_PASSTHROUGH)(worker)
    app.command("beat", context_settings=_PASSTHROUGH)(beat)
