"""Rotation records on a real redis-server: single-flight claim, exactly-once terminal publish."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import redis

from worker.errors import LockLost
from worker.events import Outcome
from worker.store.destinations import DestinationStates
from worker.store.keys import Keys
from worker.store.lease import Fence, Lease
from worker.store.records import RotationStore


def make_store(client: redis.Redis, keys: Keys) -> RotationStore:
    return RotationStore(client, keys, claim_ttl=3600, stream_maxlen=1000)


def stream(client: redis.Redis, keys: Keys) -> list[dict[str, object]]:
    rows: Any = client.xrange(keys.events)
    return [json.loads(fields["event"]) for _, fields in rows]


def finish(
    store: RotationStore, rotation_id: str, outcome: str = "succeeded", fence: Fence | None = None
) -> bool:
    record = store.record(rotation_id)
    assert record is not None
    event = {"type": f"rotator.rotation.{outcome}", "data": {"rotationId": rotation_id}}
    return store.finish(
        record,
        outcome,
        event,
        record_fields={"finished_at": "1", "step": "publish"},
        destination_fields={"last_outcome": outcome, "last_rotation_id": rotation_id},
        fence=fence,
    )


def test_claim_is_single_flight_under_concurrency(redis_client: redis.Redis, keys: Keys) -> None:
    store = make_store(redis_client, keys)
    barrier = threading.Barrier(20)
    results = []
    lock = threading.Lock()

    def claim() -> None:
        barrier.wait()
        result = store.claim("dest-1", trigger="operator", reason="r")
        with lock:
            results.append(result)

    threads = [threading.Thread(target=claim) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.rotation_id for r in results}) == 1
    assert [r.created for r in results].count(True) == 1
    winner = results[0].rotation_id
    assert store.active("dest-1") == winner
    record = store.record(winner)
    assert record is not None
    assert record.destination_id == "dest-1"
    assert record.get("trigger") == "operator"
    assert record.attempt == 0
    assert redis_client.smembers(keys.destinations) == {"dest-1"}
    # Only the winner wrote a record.
    assert len(list(redis_client.scan_iter(keys.rotation("*")))) == 1


def test_claims_of_different_destinations_are_independent(
    redis_client: redis.Redis, keys: Keys
) -> None:
    store = make_store(redis_client, keys)
    a = store.claim("dest-a", trigger="operator")
    b = store.claim("dest-b", trigger="schedule")
    assert a.created and b.created and a.rotation_id != b.rotation_id


def test_finish_is_exactly_once_and_releases_the_claim(
    redis_client: redis.Redis, keys: Keys
) -> None:
    store = make_store(redis_client, keys)
    claim = store.claim("dest-1", trigger="operator")
    assert finish(store, claim.rotation_id) is True
    assert finish(store, claim.rotation_id, "failed") is False  # a redelivery
    events = stream(redis_client, keys)
    assert [e["type"] for e in events] == ["rotator.rotation.succeeded"]
    record = store.record(claim.rotation_id)
    assert record is not None and record.outcome == "succeeded"
    assert record.get("status") == "succeeded"
    assert store.active("dest-1") is None
    assert DestinationStates(redis_client, keys).get("dest-1").last_outcome == Outcome.SUCCEEDED
    assert store.history("dest-1") == [claim.rotation_id]
    assert redis_client.ttl(keys.rotation(claim.rotation_id)) > 0
    # The next trigger gets a new rotation.
    assert store.claim("dest-1", trigger="operator").created


def test_finish_by_a_worker_that_lost_its_lease_writes_nothing(
    redis_client: redis.Redis, keys: Keys
) -> None:
    """The terminal write checks the lease token and generation in its own Lua step."""
    store = make_store(redis_client, keys)
    claim = store.claim("dest-1", trigger="operator")
    first = Lease(redis_client, keys, "dest-1", ttl=30, renew_every=10)
    assert first.acquire()
    redis_client.delete(keys.lock("dest-1"))  # expired while the first worker was paused
    second = Lease(redis_client, keys, "dest-1", ttl=30, renew_every=10)
    assert second.acquire()
    try:
        with pytest.raises(LockLost):
            finish(store, claim.rotation_id, "needs_attention", fence=first)
        assert stream(redis_client, keys) == []
        assert store.active("dest-1") == claim.rotation_id
        assert finish(store, claim.rotation_id, fence=second) is True
        assert [e["type"] for e in stream(redis_client, keys)] == ["rotator.rotation.succeeded"]
    finally:
        first.release()
        second.release()


def test_finish_leaves_another_rotations_claim_alone(redis_client: redis.Redis, keys: Keys) -> None:
    store = make_store(redis_client, keys)
    old = store.claim("dest-1", trigger="operator")
    redis_client.delete(keys.active("dest-1"))  # the claim expired...
    new = store.claim("dest-1", trigger="operator")  # ...and a new rotation took over
    assert finish(store, old.rotation_id, "failed")
    assert store.active("dest-1") == new.rotation_id


def test_concurrent_finishes_publish_one_event(redis_client: redis.Redis, keys: Keys) -> None:
    store = make_store(redis_client, keys)
    claim = store.claim("dest-1", trigger="operator")
    barrier = threading.Barrier(10)
    wins = []

    def run() -> None:
        barrier.wait()
        wins.append(finish(store, claim.rotation_id))

    threads = [threading.Thread(target=run) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1
    assert len(stream(redis_client, keys)) == 1


def test_publish_once_guards_by_flag(redis_client: redis.Redis, keys: Keys) -> None:
    store = make_store(redis_client, keys)
    claim = store.claim("dest-1", trigger="operator")
    event = {"type": "rotator.rotation.started"}
    assert store.publish_once(claim.rotation_id, "started_published", event)
    assert not store.publish_once(claim.rotation_id, "started_published", event)
    assert len(stream(redis_client, keys)) == 1


def test_release_claim_only_if_still_ours(redis_client: redis.Redis, keys: Keys) -> None:
    store = make_store(redis_client, keys)
    claim = store.claim("dest-1", trigger="operator")
    store.release_claim("dest-1", "someone-else")
    assert store.active("dest-1") == claim.rotation_id
    store.release_claim("dest-1", claim.rotation_id)
    assert store.active("dest-1") is None
    record = store.record(claim.rotation_id)
    assert record is not None and record.get("status") == "not_sent"


def test_start_counts_runs_and_publishes_started_once(
    redis_client: redis.Redis, keys: Keys
) -> None:
    store = make_store(redis_client, keys)
    claim = store.claim("dest-1", trigger="operator")
    snapshot = store.snapshot(claim.rotation_id, "dest-1")
    assert snapshot.active == claim.rotation_id and snapshot.policy_json is None
    record = snapshot.record
    assert record is not None and record.attempt == 0
    record.note(step="read")
    assert store.start(record, {"type": "started"}, status="running") == 1
    assert store.start(record, {"type": "started"}) == 2
    assert [event["type"] for event in stream(redis_client, keys)] == ["started"]
    again = store.record(claim.rotation_id)
    assert again is not None and again.attempt == 2 == record.attempt
    assert again.get("step") == "read" and again.get("status") == "running"


def test_writes_send_noted_fields_and_mark_created(redis_client: redis.Redis, keys: Keys) -> None:
    store = make_store(redis_client, keys)
    claim = store.claim("dest-1", trigger="operator")
    record = store.record(claim.rotation_id)
    assert record is not None
    record.note(old_credential_id="c-1")
    assert store.record(claim.rotation_id).get("old_credential_id") is None  # type: ignore[union-attr]
    store.write(record, step="read")
    assert not record.pending
    stored = store.record(claim.rotation_id)
    assert stored is not None and stored.fields == record.fields
    assert stored.get("old_credential_id") == "c-1" and stored.get("missing") is None
    assert store.record("no-such-rotation") is None
    assert not store.created_by_us("c-2")
    record.note(environment_id="env-1")
    store.write_new_credential(record, "c-2")
    assert store.created_by_us("c-2")
    stored = store.record(claim.rotation_id)
    assert stored is not None and stored.fields == record.fields
    assert stored.get("new_credential_id") == "c-2" and stored.get("environment_id") == "env-1"
