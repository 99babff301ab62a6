"""``watch_environment``: look at an environment's watched rotations (a thin shell).

Beat sends one per environment when its watched rotations are due for a look
(:mod:`worker.scheduling.beat`); :func:`worker.watch.poll.poll_environment` does the work.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from worker.celery_app import runtime_for
from worker.watch.poll import poll_environment

__all__ = ["watch_environment"]


@shared_task(bind=True, name="watch_environment", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def watch_environment(self: Task, environment_id: str, rotation_ids: list[str]) -> dict[str, Any]:
    """Search the environment's failed deliveries once and judge each watched rotation."""
    runtime = runtime_for(self.app)
    verdicts = poll_environment(
        runtime.redox,
        runtime.store,
        runtime.watch,
        self.app,
        environment_id,
        rotation_ids,
        poll_seconds=runtime.settings.verify.poll_seconds,
    )
    return {"environmentId": environment_id, "verdicts": {k: v.value for k, v in verdicts.items()}}
