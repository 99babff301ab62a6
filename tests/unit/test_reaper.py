"""Beat's reaper on a real redis-server with real Celery messages (no worker): a claimed
rotation whose message the broker still holds is left waiting; one whose message the broker
lost is sent again; a claim that was never sent is forgotten."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from config.celery import ROTATION_QUEUE
from worker.celery_app import create_app
from worker.runtime import Runtime
from worker.scheduling.reaper import ResumeReport, resume_stalled
from worker.store.broker import SEARCH_LIMIT, BrokerView
from worker.trigger import request_rotation

DEST = "0f9d8c7b-6a5e-4d3c-8b2a-19f8e7d6c5b4"


@pytest.fixture
def app(runtime: Runtime) -> Iterator[Celery]:
    app = create_app(runtime.settings)
    yield app
    app.close()


def queued(client: redis.Redis) -> list[str]:
    return [str(m) for m in client.lrange(ROTATION_QUEUE, 0, -1)]


def later(runtime: Runtime) -> float:
    """A moment past every start-by and look-again time the test has set so far."""
    return time.time() + 3 * runtime.settings.lock.ttl_seconds


def test_a_claim_is_a_run_that_must_start_within_the_lease_ttl(
    app: Celery, runtime: Runtime, redis_client: redis.Redis
) -> None:
    claim = request_rotation(app, runtime.store, DEST, trigger="operator")
    ttl = runtime.settings.lock.ttl_seconds
    assert runtime.store.stalled_runs(time.time() + ttl - 5, 10) == []
    assert runtime.store.stalled_runs(time.time() + ttl + 5, 10) == [claim.rotation_id]


def test_a_queued_rotation_is_left_waiting(
    app: Celery, runtime: Runtime, redis_client: redis.Redis
) -> None:
    claim = request_rotation(app, runtime.store, DEST, trigger="operator")
    assert resume_stalled(app, runtime, now=later(runtime)) == ResumeReport(alive=1)
    (message,) = queued(redis_client)
    assert claim.rotation_id in message


def test_a_message_reserved_by_a_worker_counts_as_held(
    app: Celery, runtime: Runtime, redis_client: redis.Redis
) -> None:
    claim = request_rotation(app, runtime.store, DEST, trigger="operator")
    (message,) = queued(redis_client)
    redis_client.delete(ROTATION_QUEUE)  # as kombu moves a reserved message
    redis_client.hset("unacked", "delivery-tag-1", message)
    assert resume_stalled(app, runtime, now=later(runtime)) == ResumeReport(alive=1)
    assert queued(redis_client) == []
    assert claim.rotation_id in message


def test_a_message_the_broker_lost_is_sent_again(
    app: Celery, runtime: Runtime, redis_client: redis.Redis
) -> None:
    claim = request_rotation(app, runtime.store, DEST, trigger="operator")
    redis_client.delete(ROTATION_QUEUE)  # lost with the last second before a Redis restart
    assert resume_stalled(app, runtime, now=later(runtime)) == ResumeReport(resumed=1)
    (message,) = queued(redis_client)
    assert claim.rotation_id in message and DEST in message
    # Sent once: the next look finds it queued.
    assert resume_stalled(app, runtime, now=later(runtime) + 100) == ResumeReport(alive=1)


def test_a_claim_that_was_never_sent_is_forgotten(
    app: Celery, runtime: Runtime, redis_client: redis.Redis
) -> None:
    claim = runtime.store.claim(DEST, trigger="operator")
    runtime.store.release_claim(DEST, claim.rotation_id)
    assert runtime.store.stalled_runs(later(runtime), 10) == []
    assert resume_stalled(app, runtime, now=later(runtime)) == ResumeReport()
    assert queued(redis_client) == []


def test_a_backlog_too_long_to_search_counts_as_holding_everything(
    redis_client: redis.Redis,
) -> None:
    redis_client.rpush(ROTATION_QUEUE, *[f"message-{n}" for n in range(SEARCH_LIMIT + 1)])
    assert BrokerView(redis_client).holds("not-in-any-message")
    redis_client.ltrim(ROTATION_QUEUE, 0, 9)
    assert not BrokerView(redis_client).holds("not-in-any-message")
    assert BrokerView(redis_client).holds("message-3")
