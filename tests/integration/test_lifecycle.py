"""What follows a rotation (next due time, retirement job) on a real redis-server."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from config.registry import DestinationPolicy
from config.settings import Settings
from worker.lifecycle import follow_up, retry_delay
from worker.retirement import RetirementQueue
from worker.runtime import Runtime
from worker.scheduling.store import ScheduleStore
from worker.store.records import RotationRecord

pytestmark = pytest.mark.integration

HOUR = 3600.0
INTERVAL = 24 * HOUR


@pytest.fixture
def runtime(redis_url: str) -> Iterator[Runtime]:
    settings = Settings(redis_url=redis_url, scheduler={"default_grace_seconds": 7 * HOUR})
    built = Runtime.build(settings)
    yield built
    built.close()


def register(runtime: Runtime, *idents: str, **fields: Any) -> DestinationPolicy:
    """Sync registry entries for ``idents``; return the first one's policy."""
    policies = [
        DestinationPolicy(
            destination_id=ident,
            environment_id="env",
            interval_seconds=INTERVAL,
            grace_seconds=2 * HOUR,
            **fields,
        )
        for ident in idents
    ]
    ScheduleStore(runtime.redis, runtime.keys).sync(
        policies, time.time(), random.Random(1), catchup_seconds=0
    )
    return policies[0]


def finish(runtime: Runtime, ident: str, outcome: str, old: str = "c-old") -> RotationRecord:
    """A rotation of ``ident`` from ``old`` to a new credential, ended with ``outcome``."""
    store = runtime.store
    rid = store.claim(ident, trigger="schedule").rotation_id
    new = f"c-new-{rid[:8]}"
    record = store.record(rid)
    assert record is not None
    record.note(old_credential_id=old, environment_id="env")
    store.write_new_credential(record, new)
    now = repr(time.time())
    dest = {"last_rotation_id": rid, "last_outcome": outcome, "last_finished_at": now}
    if outcome == "needs_attention":
        dest["needs_attention"] = now
    store.finish(record, outcome, {"type": outcome}, record_fields={"finished_at": now},
                 destination_fields=dest, fence=None)  # fmt: skip
    finished = store.record(rid)
    assert finished is not None and finished.outcome == outcome
    return finished


def queued(runtime: Runtime) -> dict[str, float]:
    return dict(RetirementQueue(runtime.redis, runtime.keys).pending())


def test_success_schedules_next_due_and_retires_the_rotated_away_original(
    runtime: Runtime,
) -> None:
    register(runtime, "d1")
    record = finish(runtime, "d1", "succeeded", old="seeded-original")
    follow_up(runtime, record)
    finished = float(record.fields["finished_at"])
    due = ScheduleStore(runtime.redis, runtime.keys).due_of("d1")
    assert due is not None and finished + 0.9 * INTERVAL <= due <= finished + INTERVAL
    assert queued(runtime) == {"seeded-original": pytest.approx(finished + 2 * HOUR)}
    job = RetirementQueue(runtime.redis, runtime.keys).job("seeded-original")
    assert job["destination_id"] == "d1" and job["rotation_id"] == record.rotation_id
    assert job["environment_id"] == "env" and job["retire"] == "rotated-away"
    # A redelivered task runs the follow-up again: still one job, same due time.
    follow_up(runtime, record)
    assert queued(runtime) == {"seeded-original": pytest.approx(finished + 2 * HOUR)}


def test_created_only_keeps_foreign_originals_but_retires_our_own(runtime: Runtime) -> None:
    register(runtime, "d1", retire="created-only")
    first = finish(runtime, "d1", "succeeded", old="seeded-original")
    follow_up(runtime, first)
    assert queued(runtime) == {}
    ours = str(first.get("new_credential_id"))
    second = finish(runtime, "d1", "succeeded", old=ours)
    follow_up(runtime, second)
    assert set(queued(runtime)) == {ours}


def test_never_retires_nothing(runtime: Runtime) -> None:
    register(runtime, "d1", retire="never")
    first = finish(runtime, "d1", "succeeded")
    follow_up(runtime, first)
    second = finish(runtime, "d1", "succeeded", old=str(first.get("new_credential_id")))
    follow_up(runtime, second)
    assert queued(runtime) == {}


def test_without_a_policy_default_retirement_and_no_schedule(runtime: Runtime) -> None:
    record = finish(runtime, "adhoc", "succeeded", old="orig")
    follow_up(runtime, record)
    finished = float(record.fields["finished_at"])
    assert queued(runtime) == {"orig": pytest.approx(finished + 7 * HOUR)}
    assert ScheduleStore(runtime.redis, runtime.keys).due_of("adhoc") is None


def test_failure_retries_soon_and_retires_nothing(runtime: Runtime) -> None:
    policy = register(runtime, "d1")
    record = finish(runtime, "d1", "rolled_back")
    follow_up(runtime, record)
    finished = float(record.fields["finished_at"])
    due = ScheduleStore(runtime.redis, runtime.keys).due_of("d1")
    delay = retry_delay(policy)
    assert due is not None and finished + 0.5 * delay <= due <= finished + delay
    assert queued(runtime) == {}


def test_needs_attention_and_paused_leave_the_schedule(runtime: Runtime) -> None:
    register(runtime, "d1", "d2")
    schedule = ScheduleStore(runtime.redis, runtime.keys)
    follow_up(runtime, finish(runtime, "d1", "needs_attention"))
    assert schedule.due_of("d1") is None
    runtime.states.pause("d2", 1.0)  # paused while it ran
    follow_up(runtime, finish(runtime, "d2", "succeeded"))
    assert schedule.due_of("d2") is None
    assert len(queued(runtime)) == 1  # a paused destination's old credential still retires


def test_a_late_redelivery_does_not_override_a_newer_rotation(runtime: Runtime) -> None:
    register(runtime, "d1")
    schedule = ScheduleStore(runtime.redis, runtime.keys)
    older = finish(runtime, "d1", "succeeded")
    newer = finish(runtime, "d1", "succeeded", old=str(older.get("new_credential_id")))
    follow_up(runtime, newer)
    due = schedule.due_of("d1")
    schedule.reschedule("d1", 123.0)  # a marker: the stale follow-up must not touch it
    follow_up(runtime, older)
    assert schedule.due_of("d1") == 123.0 and due != 123.0
