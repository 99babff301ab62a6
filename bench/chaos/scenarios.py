"""Every chaos scenario with its CI and full sizes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from bench.chaos import crash, faults, harness, infra
from bench.chaos.invariants import Figures

__all__ = ["SCENARIOS", "Scenario"]


@dataclass(frozen=True)
class Scenario:
    """A named scenario: ``run(size)`` returns its figures."""

    name: str
    summary: str
    ci: Callable[[], Figures]
    full: Callable[[], Figures]

    def run(self, size: str) -> Figures:
        """Run at ``size`` (``ci`` or ``full``)."""
        return self.ci() if size == "ci" else self.full()


def _crash(step: str) -> Scenario:
    return Scenario(
        f"crash-{step}",
        f"pool process SIGKILLed right after {step}; another process finishes",
        partial(crash.crash_after, step, 2, "ci"),
        partial(crash.crash_after, step, 20, "full"),
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        *(_crash(step) for step in crash.STEPS),
        Scenario(
            "crash-worker",
            "whole workers SIGKILLed at random moments mid-run, replaced",
            partial(crash.crash_worker, 2, 8, "ci"),
            partial(crash.crash_worker, 10, 100, "full"),
        ),
        Scenario(
            "fault-storm",
            "20 % 5xx, 10 % 429, 5 % hangs past the client timeout",
            partial(faults.fault_storm, 20, "ci"),
            partial(faults.fault_storm, 1000, "full"),
        ),
        Scenario(
            "permanent-errors",
            "403/404/422 on each Redox call: one attempt, rollback, error class in the event",
            partial(faults.permanent_errors, 1, "ci"),
            partial(faults.permanent_errors, 5, "full"),
        ),
        Scenario(
            "token-expiry",
            "6 s tokens during a long run: refreshed, never per call, no failure",
            partial(faults.token_expiry, 12, "ci", spread_seconds=10),
            partial(faults.token_expiry, 200, "full", spread_seconds=90),
        ),
        Scenario(
            "slow-redox",
            "replies near the read timeout, short visibility timeout: no redelivery",
            partial(faults.slow_redox, 6, "ci"),
            partial(faults.slow_redox, 60, "full"),
        ),
        Scenario(
            "redis-restart",
            "redis-server restarted (AOF) mid-fleet: nothing lost, workers reconnect",
            partial(infra.redis_restart, 16, "ci"),
            partial(infra.redis_restart, 200, "full"),
        ),
        Scenario(
            "sentinel-failover",
            "Sentinel primary SIGKILLed mid-fleet: replica promoted, workers follow",
            partial(infra.sentinel_failover, 20, "ci", env=harness.BASE_ENV),
            partial(infra.sentinel_failover, 200, "full"),  # at the service's defaults
        ),
        Scenario(
            "two-beats",
            "two beat processes, three workers, a due fleet: no double rotation",
            partial(infra.two_beats, 6, "ci"),
            partial(infra.two_beats, 100, "full"),
        ),
        Scenario(
            "concurrent-triggers",
            "100 simultaneous triggers of one destination: one rotation",
            partial(infra.concurrent_triggers, 2, "ci"),
            partial(infra.concurrent_triggers, 20, "full"),
        ),
        Scenario(
            "secured-stack",
            "Redis password end to end, Flower with auth: nothing secret anywhere",
            partial(infra.secured_stack, 4, "ci"),
            partial(infra.secured_stack, 20, "full"),
        ),
    ]
}
