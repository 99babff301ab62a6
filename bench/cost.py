"""Figure 9: a rotation's Redox traffic does not grow with its environment.

Two environments of one sandbox, each with N fresh destinations (OAuth clients of the
sandbox's Okta-style IdP, deliveries off): one filled up to 100 credentials, the other to
10,000, with unused ``filler-NNNNN`` credentials (``POST /_sandbox/credentials``). The same
worker (one process, 8 threads, no watch) rotates the N destinations of the small
environment, then those of the large one; after each, ``retire_due`` retires the old
credentials (grace 0). A warm-up rotation in a third environment comes first, so the token
and any per-process lookup fall outside both measurements.

The sandbox's journal gives the bytes of every request body and response body; only
Redox's paths count (``/platform/...`` and ``/v2/auth/token``, not the IdP's or the
simulated deliveries'). The figure is the bytes per rotation at 10,000 credentials over the
bytes per rotation at 100: goal <= 1.10 (the issue: a rotation that listed its environment's
credentials downloaded all of them, ~530 bytes each, and past 4 MiB failed for good).
Retirement is reported apart, per retired credential; it lists the environment's
destinations (N here in both), never its credentials, so it must be flat too.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench.harness import IDP_UNLIMITED, UNLIMITED, Driver, Figure, command_for, fmt_counts
from devstack.rig import Rig

__all__ = ["run"]

NAME = "cost"
GOAL_RATIO = 1.10
SIZES = (100, 10_000)
REDOX = ("/platform/", "/v2/auth/token")


@dataclass(frozen=True)
class Traffic:
    """Redox's requests in one slice of the journal."""

    calls: Counter[str]
    request_bytes: int
    response_bytes: int
    bytes_by_kind: dict[str, int]
    statuses: Counter[str]

    @property
    def total_bytes(self) -> int:
        """Request plus response body bytes."""
        return self.request_bytes + self.response_bytes

    @classmethod
    def of(cls, entries: list[dict[str, Any]]) -> Traffic:
        """Sum the Redox entries of a journal slice."""
        ours = [e for e in entries if e["path"].startswith(REDOX)]
        by_kind: Counter[str] = Counter()
        for e in ours:
            by_kind[e["kind"]] += (e["request_bytes"] or 0) + (e["response_bytes"] or 0)
        return cls(
            calls=Counter(e["kind"] for e in ours),
            request_bytes=sum(e["request_bytes"] or 0 for e in ours),
            response_bytes=sum(e["response_bytes"] or 0 for e in ours),
            bytes_by_kind=dict(by_kind),
            statuses=Counter(str(e["status"]) for e in ours),
        )


@dataclass(frozen=True)
class Phase:
    """One environment size: its rotations' traffic and its retirement's."""

    held: int  # credentials in the environment right before its rotations
    succeeded: int
    rotation: Traffic
    retirement: Traffic
    count: int

    def per_rotation(self) -> float:
        """Redox body bytes per rotation."""
        return self.rotation.total_bytes / self.count

    def per_retirement(self) -> float:
        """Redox body bytes per retired credential."""
        return self.retirement.total_bytes / self.count

    def line(self) -> str:
        """The details line of this size."""
        calls = ", ".join(f"{k}={v / self.count:g}" for k, v in sorted(self.rotation.calls.items()))
        return (
            f"{self.held:,} credentials: {self.per_rotation():,.0f} B/rotation "
            f"({self.rotation.request_bytes / self.count:,.0f} request + "
            f"{self.rotation.response_bytes / self.count:,.0f} response); calls/rotation: "
            f"{calls}; succeeded {self.succeeded}/{self.count}"
        )

    def retirement_line(self) -> str:
        """The details line of this size's retirement."""
        deletes = self.retirement.calls.get("delete_credential", 0)
        return (
            f"{self.held:,} credentials: {self.per_retirement():,.0f} B per retired credential "
            f"({deletes} DELETE, {self.retirement.calls.get('list_destinations', 0)} "
            f"destination list; {fmt_counts(sorted(self.retirement.bytes_by_kind.items()))} B)"
        )


def _mark(stack: Rig) -> int:
    mark: int = stack.control.journal()["next"]
    return mark


def _since(stack: Rig, mark: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = stack.control.journal(since=mark)["entries"]
    return entries


def _phase(stack: Rig, driver: Driver, size: int, count: int) -> Phase:
    """N fresh destinations in a new environment filled to ``size`` credentials: rotate them,
    then retire their old credentials; the journal slice of each."""
    environment = stack.control.add_environment()
    destinations = stack.seed(count, deliveries=False, environment_id=environment)
    held = stack.control.add_credentials(size - count, environment_id=environment)["credentials"]
    mark = _mark(stack)
    result = driver.run(destinations, timeout=120)
    stack.settle(30)
    rotation = Traffic.of(_since(stack, mark))
    mark = _mark(stack)
    driver.retire_now(count)
    stack.settle(30)
    retirement = Traffic.of(_since(stack, mark))
    return Phase(
        held=int(held),
        succeeded=result.outcomes.get("succeeded", 0),
        rotation=rotation,
        retirement=retirement,
        count=count,
    )


def run(stack: Rig, quick: bool = False) -> Figure:
    """Rotate N destinations at 100 and at 10,000 credentials; compare bytes per rotation."""
    count = 5 if quick else 20
    stack.reset(idp_rate_limit=IDP_UNLIMITED)
    stack.worker("cost", concurrency=8, pool="threads", env=UNLIMITED)
    driver = Driver(stack.settings(**UNLIMITED))
    try:
        warm = stack.seed(1, deliveries=False, environment_id=stack.control.add_environment())
        driver.run(warm, timeout=120)
        driver.retire_now(len(warm))
        small = _phase(stack, driver, SIZES[0], count)
        large = _phase(stack, driver, SIZES[1], count)
    finally:
        driver.close()
    ratio = large.per_rotation() / small.per_rotation()
    retire_ratio = large.per_retirement() / small.per_retirement()
    listed = small.rotation.calls.get("list_credentials", 0) + large.rotation.calls.get(
        "list_credentials", 0
    )
    statuses = small.rotation.statuses + large.rotation.statuses
    statuses += small.retirement.statuses + large.retirement.statuses
    passed = (
        small.succeeded == count
        and large.succeeded == count
        and ratio <= GOAL_RATIO
        and retire_ratio <= GOAL_RATIO
        and small.retirement.calls.get("delete_credential", 0) == count
        and large.retirement.calls.get("delete_credential", 0) == count
        and all(not s.startswith(("4", "5")) for s in statuses)
    )
    kinds = sorted(set(small.rotation.bytes_by_kind) | set(large.rotation.bytes_by_kind))
    details = [
        f"N={count} fresh destinations per size, 1 worker process x 8 threads, no watch, "
        "zero latency; Redox paths only (/platform/..., /v2/auth/token), bodies in and out",
        small.line(),
        large.line(),
        "bytes/rotation by kind (100 -> 10,000): "
        + ", ".join(
            f"{k} {small.rotation.bytes_by_kind.get(k, 0) / count:,.0f} -> "
            f"{large.rotation.bytes_by_kind.get(k, 0) / count:,.0f}"
            for k in kinds
        ),
        f"credential lists in the rotations: {listed}; tokens: "
        f"{small.rotation.calls.get('token', 0) + large.rotation.calls.get('token', 0)} "
        "(warm-up rotation first)",
        "retirement, " + small.retirement_line(),
        "retirement, " + large.retirement_line(),
        f"retirement ratio 10,000 / 100: {retire_ratio:.3f} (lists destinations, not credentials)",
        f"statuses: {fmt_counts(sorted(statuses.items()))}",
    ]
    return Figure(
        name=NAME,
        title="Redox bytes per rotation, 10,000 vs 100 credentials in the environment",
        value=f"{ratio:.3f} ({large.per_rotation():,.0f} vs {small.per_rotation():,.0f} "
        f"B/rotation); retirement {retire_ratio:.3f}",
        goal=f"<= {GOAL_RATIO:.2f} (rotation and retirement)",
        ratio=ratio / GOAL_RATIO,
        passed=passed,
        command=command_for(NAME, quick),
        details=details,
    )
