"""Due-time arithmetic with an injected clock and a seeded RNG."""

from __future__ import annotations

import random
from typing import Any

import pytest
from croniter import croniter

from config.durations import in_window
from config.registry import DestinationPolicy
from worker.scheduling.due import (
    CRON_JITTER_CAP_SECONDS,
    catchup_due,
    cron_fire_after,
    first_due,
    fit_window,
    next_due,
)

DAY = 86400.0
NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
N = 10_000


def policy(**fields: Any) -> DestinationPolicy:
    base: dict[str, Any] = {"destination_id": "d1", "environment_id": "e1"}
    if "cron" not in fields:
        base["interval_seconds"] = 30 * DAY
    return DestinationPolicy(**(base | fields))


def test_first_due_without_history_spreads_over_the_interval() -> None:
    rng = random.Random(1)
    p = policy()
    draws = [first_due(p, NOW, rng, last_rotated_at=None, catchup_seconds=3600) for _ in range(N)]
    assert all(NOW <= d <= NOW + 30 * DAY for d in draws)
    # spread, not a burst: every tenth of the interval gets some of the fleet
    buckets = {int((d - NOW) // (3 * DAY)) for d in draws}
    assert buckets >= set(range(10))


def test_first_due_with_recent_history_stays_in_the_jitter_band() -> None:
    rng = random.Random(2)
    p = policy()
    last = NOW - 5 * DAY
    draws = [first_due(p, NOW, rng, last_rotated_at=last, catchup_seconds=3600) for _ in range(N)]
    assert all(last + 27 * DAY <= d <= last + 30 * DAY for d in draws)


def test_first_due_band_partly_past_is_never_before_now() -> None:
    rng = random.Random(3)
    p = policy()
    last = NOW - 29 * DAY  # band starts at 27d, now is at 29d
    draws = [first_due(p, NOW, rng, last_rotated_at=last, catchup_seconds=60) for _ in range(N)]
    assert all(NOW <= d <= last + 30 * DAY for d in draws)


def test_overdue_catchup_is_spread_within_catchup() -> None:
    rng = random.Random(4)
    p = policy()
    last = NOW - 90 * DAY  # downtime: long overdue
    draws = [first_due(p, NOW, rng, last_rotated_at=last, catchup_seconds=3600) for _ in range(N)]
    assert all(NOW <= d <= NOW + 3600 for d in draws)
    assert len(set(draws)) > N * 0.99
    assert max(draws) - min(draws) > 3000


def test_next_due_interval_jitter_bounds() -> None:
    rng = random.Random(5)
    p = policy(interval_seconds=7 * DAY)
    draws = [next_due(p, NOW, rng) for _ in range(N)]
    assert all(NOW + 0.9 * 7 * DAY <= d <= NOW + 7 * DAY for d in draws)
    assert min(draws) < NOW + 0.91 * 7 * DAY and max(draws) > NOW + 0.99 * 7 * DAY


def test_seeded_rng_is_reproducible() -> None:
    p = policy()
    a = [next_due(p, NOW, random.Random(9)) for _ in range(3)]
    b = [next_due(p, NOW, random.Random(9)) for _ in range(3)]
    assert a == b


@pytest.mark.parametrize("window", [(120, 300), (1320, 120), (1439, 1), (0, 1)])
def test_window_respected_everywhere(window: tuple[int, int]) -> None:
    rng = random.Random(6)
    p = policy(interval_seconds=10 * DAY, window=window)  # 1-day band: always meets a window
    for i in range(2000):
        now = NOW + i * 3607.0  # walk through every time of day
        results = [
            first_due(p, now, rng, last_rotated_at=None, catchup_seconds=600),
            first_due(p, now, rng, last_rotated_at=now - DAY, catchup_seconds=600),
            first_due(p, now, rng, last_rotated_at=now - 10 * DAY, catchup_seconds=600),
            next_due(p, now, rng),
            fit_window(now, window, rng),
        ]
        for due in results:
            assert due >= now
            assert in_window(due, window), (i, due, window)
        # the band keeps its bounds when the window overlaps it
        assert now + 9 * DAY <= results[3] <= now + 10 * DAY


def test_window_wraps_midnight() -> None:
    rng = random.Random(7)
    window = (22 * 60, 2 * 60)
    noon = 20_000 * DAY + 12 * 3600
    draws = [fit_window(noon, window, rng) for _ in range(N)]
    assert all(noon + 10 * 3600 <= d < noon + 14 * 3600 for d in draws)
    assert any(d < noon + 12 * 3600 for d in draws) and any(d > noon + 12 * 3600 for d in draws)


def test_fit_window_keeps_time_inside() -> None:
    rng = random.Random(8)
    inside = 20_000 * DAY + 3 * 3600
    assert fit_window(inside, (120, 300), rng) == inside
    assert fit_window(inside, None, rng) == inside
    # at the exclusive end: moves to the next day's window
    end = 20_000 * DAY + 5 * 3600
    moved = fit_window(end, (120, 300), rng)
    assert end + 21 * 3600 <= moved < end + 24 * 3600


def test_short_interval_outside_window_goes_to_next_window() -> None:
    rng = random.Random(10)
    p = policy(interval_seconds=3600, window=(120, 180))
    rotated = 20_000 * DAY + 10 * 3600  # band 10:54-11:00 misses 02:00-03:00
    due = next_due(p, rotated, rng)
    assert 20_001 * DAY + 2 * 3600 <= due < 20_001 * DAY + 3 * 3600


def test_catchup_zero_and_window() -> None:
    rng = random.Random(11)
    assert catchup_due(policy(), NOW, 0.0, rng) == NOW
    assert catchup_due(None, NOW, 0.0, rng) == NOW
    due = catchup_due(policy(window=(120, 180)), NOW, 60.0, rng)
    assert in_window(due, (120, 180)) and due > NOW


def test_cron_next_due_is_fire_plus_bounded_jitter() -> None:
    rng = random.Random(12)
    p = policy(cron="0 3 * * 1")  # weekly: jitter capped at 1h
    fire = cron_fire_after("0 3 * * 1", NOW)
    assert croniter("0 3 * * 1", NOW).get_next(float) == fire
    draws = [next_due(p, NOW, rng) for _ in range(3000)]  # croniter is slow-ish
    assert all(fire <= d <= fire + CRON_JITTER_CAP_SECONDS for d in draws)
    assert max(draws) - min(draws) > 3000


def test_cron_short_period_jitter_is_ten_percent() -> None:
    rng = random.Random(13)
    p = policy(cron="*/10 * * * *")  # every 10 minutes: jitter up to 60 s
    fire = cron_fire_after("*/10 * * * *", NOW)
    draws = [next_due(p, NOW, rng) for _ in range(3000)]  # croniter is slow-ish
    assert all(fire <= d <= fire + 60 for d in draws)


def test_cron_first_due_and_overdue() -> None:
    rng = random.Random(14)
    p = policy(cron="0 3 * * *")
    fire = cron_fire_after("0 3 * * *", NOW)
    fresh = first_due(p, NOW, rng, last_rotated_at=None, catchup_seconds=600)
    assert fire <= fresh <= fire + 3600
    overdue = first_due(p, NOW, rng, last_rotated_at=NOW - 3 * DAY, catchup_seconds=600)
    assert NOW <= overdue <= NOW + 600
    recent = first_due(p, NOW, rng, last_rotated_at=NOW - 60, catchup_seconds=600)
    assert fire <= recent <= fire + 3600


def test_cron_with_window() -> None:
    rng = random.Random(15)
    p = policy(cron="0 12 * * *", window=(120, 300))  # fires outside the window
    for i in range(500):
        due = next_due(p, NOW + i * 7919.0, rng)
        assert in_window(due, (120, 300))
