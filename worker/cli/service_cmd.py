"""``rotator worker`` and ``rotator beat``: the long-running service processes.

``beat`` syncs the registry (ROTATOR_REGISTRY_PATH) at start, then runs its jobs every
``ROTATOR_SCHEDULER__TICK_SECONDS`` in its own process (see :mod:`worker.scheduling.beat`).
"""

from __future__ import annotations

import typer
from celery import Celery

from config.celery import HOUSEKEEPING_QUEUE, ROTATION_QUEUE
from config.settings import Settings
from worker.celery_app import create_app
from worker.cli.common import settings_or_exit
from worker.logging import configure_logging, get_logger
from worker.runtime import Runtime
from worker.scheduling.beat import beat_schedule, sync_registry

__all__ = ["beat_app", "register"]

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


def beat_app(settings: Settings) -> Celery:
    """The Celery app with beat's schedule (every entry a local job, see
    :mod:`worker.scheduling.beat`)."""
    app = create_app(settings)
    app.conf.beat_schedule = beat_schedule(settings.scheduler.tick_seconds)
    return app


def beat(ctx: typer.Context) -> None:
    """Start the scheduler: syncs the registry, then enqueues due rotations every tick."""
    settings = settings_or_exit()
    configure_logging(settings.log_format, settings.log_level)
    runtime = Runtime.build(settings)
    try:
        report = sync_registry(runtime)
    finally:
        runtime.close()
    if report is not None:
        log.info("registry synced", report=str(report))
    app = beat_app(settings)
    argv = [
        "beat",
        "--scheduler", "worker.scheduling.beat:RotatorScheduler",
        "--loglevel", settings.log_level,
        *ctx.args,
    ]  # fmt: skip
    app.start(argv=argv)


def register(app: typer.Typer) -> None:
    """Add ``worker`` and ``beat``."""
    app.command("worker", context_settings=_PASSTHROUGH)(worker)
    app.command("beat", context_settings=_PASSTHROUGH)(beat)
