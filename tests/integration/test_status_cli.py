"""``rotator status``, ``plan``, ``pause``, ``resume`` and ``retry`` against a live stack."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from devstack.stack import LocalStack
from tests.integration.lifecycle_helpers import (
    completed,
    control,
    current_credentials,
    run_json,
    sandbox_ids,
    stack_factory,
    wait_until,
    write_registry,
)
from worker.store.keys import Keys

pytestmark = pytest.mark.integration
__all__ = ["stack_factory"]

DAY = 86400.0


def ts(iso: str | None) -> float:
    assert iso is not None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def by_id(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["destinationId"]: row for row in document["destinations"]}


def test_status_plan_pause_resume_retry(
    stack_factory: Callable[..., LocalStack], tmp_path: Path
) -> None:
    stack = stack_factory(4)
    ctl = control(stack)
    env_id, (a, b, c, d) = sandbox_ids(ctl)
    registry = write_registry(tmp_path / "registry.toml", env_id, [a, b, c], grace="1h")
    assert stack.rotator("registry", "sync", str(registry)).returncode == 0
    stack.start_worker("w1", concurrency=2)
    ctl.patch_faults(permanent={b: 503})  # b's rotation exhausts its retries
    before = time.time()
    for destination in (a, d):
        assert stack.rotator("rotate", destination, "--wait").returncode == 0
    failed = stack.rotator("rotate", b, "--wait", "--json", "--timeout", "60")
    assert failed.returncode == 1, completed(failed)
    assert json.loads(failed.stdout)["outcome"] == "needs_attention"

    status = run_json(stack, "status", "--json")
    rows = by_id(status)
    assert status["summary"] == {
        "ok": 3, "in_progress": 0, "paused": 0, "needs_attention": 1, "overdue": 0, "total": 4
    }  # fmt: skip
    assert rows[a]["state"] == "ok" and rows[a]["lastRotation"]["outcome"] == "succeeded"
    assert rows[a]["credentialId"] == current_credentials(ctl)[a]
    assert rows[a]["environmentId"] == env_id and rows[a]["inRegistry"] is True
    assert 0 <= rows[a]["credentialAgeSeconds"] <= time.time() - before + 1
    finished = ts(rows[a]["lastRotation"]["finishedAt"])
    assert finished + 27 * DAY - 1 <= ts(rows[a]["nextDue"]) <= finished + 30 * DAY + 1
    assert rows[b]["state"] == "needs_attention" and rows[b]["nextDue"] is None
    assert rows[b]["lastRotation"]["error"]
    assert rows[c]["lastRotation"]["outcome"] is None and rows[c]["credentialId"] is None
    assert rows[c]["nextDue"] is not None and rows[c]["credentialAgeSeconds"] is None
    assert rows[d]["inRegistry"] is False and rows[d]["nextDue"] is None
    one = run_json(stack, "status", d, "--json")
    assert [r["destinationId"] for r in one["destinations"]] == [d]
    table = stack.rotator("status")
    assert table.returncode == 0 and "needs attention" in table.stdout

    # plan: pin c's due time to 30 minutes from now. Within 2 hours: c's rotation, a's
    # original retiring (grace 1h), c's forecast retirement (30 min + 1h); b failed, and d
    # (not in the registry) retires after the 24h default grace.
    client = redis.Redis.from_url(stack.env["ROTATOR_REDIS_URL"], decode_responses=True)
    client.zadd(Keys().schedule, {c: time.time() + 1800})
    plan = run_json(stack, "plan", "--hours", "2", "--json")
    assert [u["destinationId"] for u in plan["upcoming"]] == [c]
    assert (plan["rotations"], plan["destinations"], plan["retirements"]) == (1, 1, 2)
    calls = plan["redoxCalls"]
    assert calls["rotations"] == 5 and calls["deletes"] == 2 and calls["lists"] == 2
    assert calls["total"] == 9
    assert plan["budget"]["requests"] == 6000 and plan["budget"]["withinBudget"] is True
    assert plan["budget"]["horizonCapacity"] == pytest.approx(6000 * 7200 / 300)
    later = run_json(stack, "plan", "--hours", str(24 * 31), "--json")
    assert {u["destinationId"] for u in later["upcoming"]} == {a, c}

    # pause / resume
    paused = stack.rotator("pause", c)
    assert paused.returncode == 0, completed(paused)
    row = by_id(run_json(stack, "status", c, "--json"))[c]
    assert row["state"] == "paused" and row["nextDue"] is None
    resumed = stack.rotator("resume", c)
    assert resumed.returncode == 0 and "next rotation due" in resumed.stdout
    row = by_id(run_json(stack, "status", c, "--json"))[c]
    assert row["state"] == "ok" and row["nextDue"] is not None
    not_scheduled = stack.rotator("resume", d)
    assert not_scheduled.returncode == 0 and "not in the registry" in not_scheduled.stdout
    still = stack.rotator("resume", b)
    assert "rotator retry" in still.stdout
    assert by_id(run_json(stack, "status", b, "--json"))[b]["state"] == "needs_attention"

    # retry: clears needs_attention and rotates now
    ctl.patch_faults(permanent={})
    retried = run_json(stack, "retry", b, "--json")
    assert retried["created"] is True and retried["destinationId"] == b

    def settled() -> dict[str, Any] | None:
        row = by_id(run_json(stack, "status", b, "--json"))[b]
        return row if row["lastRotation"]["rotationId"] == retried["rotationId"] else None

    row = wait_until(settled, 60, "the retried rotation")
    assert row["state"] == "ok" and row["lastRotation"]["outcome"] == "succeeded"
    assert row["nextDue"] is not None and row["needsAttention"] is False

    # bad input: one line, exit 2
    for args in (("pause", "no-such-destination"), ("retry", "bad id!"), ("status", "x" * 80)):
        bad = stack.rotator(*args)
        assert bad.returncode == 2, completed(bad)
        assert len(bad.stderr.strip().splitlines()) == 1
