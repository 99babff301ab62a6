"""``retire_due``: beat runs it to retire old credentials whose grace period is over."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from celery import Task, shared_task

from worker.celery_app import runtime_for
from worker.retirement import retire_due as run_retirement

__all__ = ["retire_due"]


@shared_task(bind=True, name="retire_due", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def retire_due(self: Task) -> dict[str, Any]:
    """Retire every due old credential that no destination references any more."""
    runtime = runtime_for(self.app)
    report = run_retirement(
        runtime.retirement,
        runtime.redox,
        runtime.events,
        runtime.sources.source_for,
        runtime.ledger,
        retry_seconds=runtime.settings.scheduler.retire_retry_seconds,
    )
    return asdict(report)
