"""Beat end to end: registry destinations rotate on their own, spread, and the old
credentials are retired after the grace period; ``rotator status`` shows it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from devstack.stack import LocalStack
from tests.integration.lifecycle_helpers import (
    completed,
    control,
    credential_ids,
    current_credentials,
    events,
    run_json,
    sandbox_ids,
    stack_factory,
    wait_until,
    write_registry,
)
from worker.store.keys import Keys

pytestmark = pytest.mark.integration
__all__ = ["stack_factory"]

BEAT_ENV = {
    "ROTATOR_SCHEDULER__TICK_SECONDS": "1",
    "ROTATOR_SCHEDULER__CATCHUP_SECONDS": "4",
    "ROTATOR_SCHEDULER__RETIRE_RETRY_SECONDS": "2",
}


def test_two_beats_rotate_due_destinations_and_retire_after_grace(
    stack_factory: Callable[..., LocalStack], tmp_path: Path
) -> None:
    stack = stack_factory(6, BEAT_ENV)
    ctl = control(stack)
    env_id, ids = sandbox_ids(ctl)
    scheduled, outside = ids[:5], ids[5]
    registry = write_registry(
        tmp_path / "registry.toml", env_id, scheduled, interval="60s", grace="2s"
    )
    synced = stack.rotator("registry", "sync", str(registry))
    assert synced.returncode == 0, completed(synced)
    # Pretend beat was down for a while: everything is overdue. Beat spreads the backlog
    # over the catch-up period when it starts.
    client = redis.Redis.from_url(stack.env["ROTATOR_REDIS_URL"], decode_responses=True)
    client.zadd(Keys().schedule, {d: 1_000_000.0 for d in scheduled})
    originals = current_credentials(ctl)
    stack.start_worker("w1", concurrency=4)
    for _ in range(2):  # two beats at once are safe: claims are atomic
        stack.start_beat(env={"ROTATOR_REGISTRY_PATH": str(registry)})

    def retired_all() -> list[dict[str, Any]] | None:
        seen = events(stack)
        done = {e["data"]["credentialId"] for e in seen if e["type"].endswith("retired")}
        return seen if done >= {originals[d] for d in scheduled} else None

    seen = wait_until(retired_all, 50, "scheduled rotations and retirements")

    succeeded = [e for e in seen if e["type"] == "rotator.rotation.succeeded"]
    assert {e["subject"] for e in succeeded} == set(scheduled)  # outside is never touched
    assert {e["data"]["trigger"] for e in succeeded} == {"schedule"}
    started = Counter(e["subject"] for e in seen if e["type"] == "rotator.rotation.started")
    assert started == Counter({d: 1 for d in scheduled})  # one rotation each, no duplicate
    now = current_credentials(ctl)
    assert now[outside] == originals[outside]
    assert all(now[d] != originals[d] for d in scheduled)
    existing = credential_ids(ctl)
    assert not existing & {originals[d] for d in scheduled}
    assert {now[d] for d in ids} <= existing

    status = run_json(stack, "status", "--json")
    rows = {r["destinationId"]: r for r in status["destinations"]}
    assert set(rows) == set(ids) - {outside}
    for destination in scheduled:
        row = rows[destination]
        assert row["state"] in ("ok", "in_progress")
        assert row["lastRotation"]["outcome"] == "succeeded"
        assert row["credentialId"] == now[destination]
        assert row["nextDue"] is not None
    next_due = [client.zscore(Keys().schedule, d) for d in scheduled]
    assert len(set(next_due)) == len(scheduled)  # spread, not one instant
