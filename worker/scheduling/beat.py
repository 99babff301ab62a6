"""What ``rotator beat`` does: sync the registry at start, then run its jobs every tick.

Beat's periodic jobs run *in the beat process* and touch only Redis: they claim what fell
due and send a Celery task only for real work. So Flower's task list shows rotations,
retirements and the odd maintenance task, never a scheduler heartbeat (a 5 s tick would
be 17,280 tasks a day). :class:`RotatorScheduler` is a Celery beat scheduler whose entries
named ``local:<job>`` call a function here instead of sending a message.

Jobs (see :data:`LOCAL_JOBS`):

* ``enqueue-due`` every tick: claim due destinations atomically and send one
  ``rotate_destination`` per claim (:func:`worker.scheduling.enqueue.enqueue_due_once`),
  then the same for due verification tokens (their own schedule).
* ``retire-due`` every three ticks: send ``retire_due`` when a retirement job is due.
* ``watch-due`` every tick: send one ``watch_environment`` per environment whose watched
  rotations are due for a look (each is looked at every ``ROTATOR_VERIFY__POLL_SECONDS``).
* ``resume-stalled`` every tick: send again the rotations whose worker died mid-run or
  whose message the broker lost (:mod:`worker.scheduling.reaper`), within the lease TTL
  plus a tick.

Beat never calls Redox. Running two beats is safe: every claim is atomic in Redis.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.beat import ScheduleEntry, Scheduler

from config.registry import load_registry
from worker.celery_app import settings_of
from worker.logging import get_logger
from worker.runtime import Runtime
from worker.scheduling.enqueue import enqueue_due_once, enqueue_due_tokens
from worker.scheduling.reaper import resume_stalled
from worker.scheduling.store import SyncReport

__all__ = ["LOCAL_JOBS", "RotatorScheduler", "beat_schedule", "retire_every", "sync_registry"]

log = get_logger(__name__)

#: Prefix of a beat entry's task name that runs in the beat process (no message sent).
LOCAL = "local:"


def retire_every(tick_seconds: float) -> float:
    """How often beat looks for due retirements: three ticks (15 s at the default tick)."""
    return max(1.0, tick_seconds * 3)


def sync_registry(runtime: Runtime) -> SyncReport | None:
    """Load the registry file (if configured) into Redis and spread what fell due while
    beat was down over the catch-up period."""
    path = runtime.settings.registry_path
    if path is None:
        return None
    registry = load_registry(path)
    rng = random.SystemRandom()
    catchup = runtime.settings.scheduler.catchup_seconds
    schedule = runtime.schedule
    report = schedule.sync(
        registry.policies(),
        time.time(),
        rng,
        catchup_seconds=catchup,
        last_rotated=runtime.states.last_success_at,
    )
    schedule.spread_overdue(time.time(), catchup, rng)
    runtime.token_schedule.sync(
        registry.policies(), time.time(), rng, lambda d: runtime.states.get(d).token_since
    )
    return report


def enqueue_due(app: Celery, runtime: Runtime) -> None:
    """Claim due destinations and send their rotations (credentials, then tokens)."""
    enqueue_due_once(app, runtime, batch_size=runtime.settings.scheduler.batch_size)
    enqueue_due_tokens(app, runtime)


def retire_due(app: Celery, runtime: Runtime) -> None:
    """Send ``retire_due`` when at least one old credential's grace period is over."""
    if runtime.retirement.next_due(time.time()) is not None:
        app.send_task("retire_due")


def watch_due(app: Celery, runtime: Runtime) -> None:
    """Send one ``watch_environment`` per environment whose watched rotations are due for a
    look (claimed with a lease: a lost task's rotations come back two polls later). When one
    is due, those due within the next poll come along: looked at together from then on,
    rotations switched at different moments share one search per environment and poll."""
    now = time.time()
    poll = runtime.settings.verify.poll_seconds
    if not runtime.watch.any_due(now):
        return
    due = runtime.watch.claim_due(now + poll, limit=2000, lease_seconds=2 * poll)
    if not due:
        return
    by_environment: dict[str, list[str]] = defaultdict(list)
    for rotation_id, record in zip(due, runtime.store.records(due), strict=True):
        if record is None or record.outcome:
            runtime.watch.done(rotation_id)
            continue
        by_environment[record.get("environment_id") or ""].append(rotation_id)
    for environment_id, rotation_ids in by_environment.items():
        app.send_task("watch_environment", args=[environment_id, rotation_ids])


def resume_runs(app: Celery, runtime: Runtime) -> None:
    """Send again the rotations whose worker died mid-run or whose message was lost."""
    resume_stalled(app, runtime)


#: Beat jobs that run in the beat process: name -> function(app, runtime).
LOCAL_JOBS: dict[str, Callable[[Celery, Runtime], None]] = {
    "enqueue_due": enqueue_due,
    "retire_due": retire_due,
    "watch_due": watch_due,
    "resume_stalled": resume_runs,
}


def beat_schedule(tick_seconds: float) -> dict[str, dict[str, Any]]:
    """The beat schedule: every entry is a local job."""
    return {
        "enqueue-due": {"task": f"{LOCAL}enqueue_due", "schedule": tick_seconds},
        "retire-due": {"task": f"{LOCAL}retire_due", "schedule": retire_every(tick_seconds)},
        "watch-due": {"task": f"{LOCAL}watch_due", "schedule": tick_seconds},
        "resume-stalled": {"task": f"{LOCAL}resume_stalled", "schedule": tick_seconds},
    }


class RotatorScheduler(Scheduler):  # type: ignore[misc]
    """Celery's in-memory beat scheduler, running ``local:`` entries in this process.

    Every entry is a short interval, so nothing is worth persisting: no shelve file, and two
    beats on one host cannot clash on one. The Runtime is built once, at the first job.
    """

    _runtime: Runtime | None = None

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        """Run a ``local:`` job here; send any other entry as a task, as beat does."""
        name = str(entry.task)
        if not name.startswith(LOCAL):
            super().apply_entry(entry, producer)
            return
        job = LOCAL_JOBS[name.removeprefix(LOCAL)]
        try:
            job(self.app, self._runtime_for_jobs())
        except Exception as exc:  # a failed tick must not stop beat; the next one retries
            log.warning("beat job failed", job=name, error=type(exc).__name__, detail=str(exc))

    def _runtime_for_jobs(self) -> Runtime:
        if self._runtime is None:
            self._runtime = Runtime.build(settings_of(self.app))
        return self._runtime
