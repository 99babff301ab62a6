"""The plan forecast: rotations (with repeats), retirements, Redox calls vs the budget."""

from __future__ import annotations

from typing import Any

import pytest

from config.registry import DestinationPolicy
from worker.scheduling.plan import forecast

NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
HOUR = 3600.0


def pol(ident: str, **fields: Any) -> DestinationPolicy:
    base: dict[str, Any] = {"destination_id": ident, "environment_id": "env"}
    if "cron" not in fields:
        base["interval_seconds"] = 30 * 86400.0
    return DestinationPolicy(**(base | fields))


def run(due: list[tuple[str, float]], policies: list[DestinationPolicy], **kw: Any) -> Any:
    args: dict[str, Any] = {
        "now": NOW, "hours": 1.0, "budget_requests": 100, "budget_window": 300.0,
        "retire_every": 15.0,
    }  # fmt: skip
    args.update(kw)
    pending = args.pop("pending", [])
    return forecast(due, {p.destination_id: p for p in policies}, pending, **args)


def test_rotations_retirements_and_calls() -> None:
    policies = [pol("a", grace_seconds=600), pol("b", grace_seconds=2 * HOUR), pol("c")]
    due = [("a", NOW - 50), ("b", NOW + 100), ("c", NOW + 2 * HOUR)]
    pending = [("old-1", NOW - 10, "env"), ("old-2", NOW + 5 * HOUR, "env")]
    doc = run(due, policies, pending=pending).as_json()
    assert doc["rotations"] == 2 and doc["destinations"] == 2 and doc["overdue"] == 1
    # old-1 (queued, due now) and a's new retirement (at now + 600); b's grace ends too late.
    assert doc["retirements"] == 2
    assert doc["redoxCalls"] == {"rotations": 10, "deletes": 2, "lists": 2, "total": 14}
    assert [u["destinationId"] for u in doc["upcoming"]] == ["a", "b"]
    budget = doc["budget"]
    assert budget["horizonCapacity"] == 1200.0
    assert budget["share"] == pytest.approx(14 / 1200, abs=1e-4)  # rounded to 4 places
    assert budget["peakWindowCalls"] == 11  # both rotations and old-1 in the first window
    assert budget["peakWindowStart"] == NOW and budget["withinBudget"] is True


def test_short_intervals_repeat_inside_the_horizon() -> None:
    fast = pol("fast", interval_seconds=600.0, retire="never")
    doc = run([("fast", NOW)], [fast], hours=1.0).as_json()
    # every 0.95 * 600 = 570 s: NOW, +570, ..., +3420 -> 7 rotations, never retired
    assert doc["rotations"] == 7 and doc["destinations"] == 1 and doc["retirements"] == 0
    assert doc["redoxCalls"]["total"] == 35


def test_cron_repeats_at_fire_times() -> None:
    hourly = pol("h", cron="0 * * * *", grace_seconds=0)
    first = NOW + 400  # 22:20
    doc = run([("h", first)], [hourly], hours=3.0).as_json()
    # 22:20, then 23:00, 00:00, 01:00 (01:13:20 is the horizon)
    assert doc["rotations"] == 4 and doc["retirements"] == 4


def test_over_budget_and_unknown_policy() -> None:
    due = [(f"d{i}", NOW + i) for i in range(30)]
    doc = run(due, [], budget_requests=100).as_json()
    assert doc["rotations"] == 30 and doc["retirements"] == 0  # no policy: rotate once
    assert doc["budget"]["peakWindowCalls"] == 150
    assert doc["budget"]["withinBudget"] is False


def test_nothing_due() -> None:
    doc = run([], []).as_json()
    assert doc["rotations"] == 0 and doc["redoxCalls"]["total"] == 0
    assert doc["budget"]["peakWindowCalls"] == 0 and doc["budget"]["withinBudget"] is True
