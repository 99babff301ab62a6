"""The shared Redox rate limit holds across worker processes (invariant 6)."""

from __future__ import annotations

import pytest

from devstack.rig import Rig
from worker.trigger import request_rotation

pytestmark = pytest.mark.integration

REQUESTS = 8
WINDOW = 2.0


def busiest_window(timestamps: list[float], window: float) -> int:
    """Most requests that arrived within any rolling ``window`` seconds."""
    stamps = sorted(timestamps)
    best = 0
    start = 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_busiest_window_counts_a_rolling_window() -> None:
    """The helper itself: 3 within 1 s, then a gap."""
    assert busiest_window([0.0, 0.5, 0.99, 2.5], 1.0) == 3
    assert busiest_window([0.0, 1.0, 2.0], 1.0) == 1


def test_two_workers_share_one_pace(rig: Rig) -> None:
    """Two worker processes stay within N requests per rolling W seconds; Redox never 429s."""
    rig.control.set_rate_limit(REQUESTS, WINDOW)
    dests = rig.seed(8)
    pace = {
        "ROTATOR_RATE_LIMIT__REQUESTS": str(REQUESTS),
        "ROTATOR_RATE_LIMIT__WINDOW_SECONDS": str(WINDOW),
    }
    workers = [rig.worker(name, concurrency=2, env=pace) for name in ("pace-a", "pace-b")]
    app, store = rig.app(), rig.store()
    ids = [request_rotation(app, store, d, trigger="operator").rotation_id for d in dests]

    outcomes = rig.wait_terminal(ids, timeout=90)

    assert set(outcomes.values()) == {"succeeded"}
    journal = rig.journal()
    assert len(journal) >= 8 * 4 + 2  # enough traffic to need pacing (> 4 windows' worth)
    assert [e for e in journal if e["status"] == 429] == []
    assert busiest_window([e["ts"] for e in journal], WINDOW) <= REQUESTS
    for worker in workers:  # both processes really took part
        assert "rotation started" in worker.log_text()
    rig.assert_one_terminal_each(ids)
