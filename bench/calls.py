"""Figure 2: Redox calls per rotation, counted by the sandbox (its journal), not by us.

N destinations (OAuth clients of the sandbox's Okta-style IdP) are rotated once by one
worker process with no watch; then ``retire_due`` retires the old credentials (grace 0).
The journal gives every Redox request by kind (the IdP's traffic is not Redox's): the
platform calls of the rotations divided by N, the token requests (one per worker process
per token lifetime), and the retirement's calls (one DELETE per old credential plus one
destinations list per environment per batch). Goal: 5 (GET destination, GET credential,
POST credential, GET destination right before the switch, PATCH destination). Baseline: the
4 calls a hand-written rotation makes (GET destination, GET credential, POST credential,
PATCH destination), which does not look for a change made by hand before it switches.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from bench.harness import IDP_UNLIMITED, UNLIMITED, Driver, Figure, command_for, fmt_counts
from devstack.rig import Rig

__all__ = ["run"]

NAME = "calls"
GOAL_CALLS = 5.0
BASELINE_CALLS = 4.0
ROTATION_KINDS = ("get_destination", "get_credential", "create_credential", "patch_destination")
REDOX = ("/platform/", "/v2/auth/token")


def run(stack: Rig, quick: bool = False) -> Figure:
    """Rotate N destinations once, retire their old credentials, count the journal."""
    count = 5 if quick else 50
    stack.reset(idp_rate_limit=IDP_UNLIMITED)
    destinations = stack.seed(count, deliveries=False)
    stack.control.clear_journal()
    stack.worker("calls", concurrency=8, pool="threads", env=UNLIMITED)
    driver = Driver(stack.settings(**UNLIMITED))
    try:
        result = driver.run(destinations, timeout=120)
        rotation_summary = _redox_summary(stack)
        driver.retire_now(count)
    finally:
        driver.close()
    summary = _redox_summary(stack)
    by_kind: dict[str, int] = summary["by_kind"]
    rotation_kinds: dict[str, int] = rotation_summary["by_kind"]
    platform = sum(v for k, v in rotation_kinds.items() if k != "token")
    per_rotation = platform / count
    tokens = by_kind.get("token", 0)
    # One worker process: one token per started token lifetime (300 s in the sandbox).
    token_budget = max(1, math.ceil(result.wall / 300))
    deletes = by_kind.get("delete_credential", 0)
    retire_lists = by_kind.get("list_destinations", 0)
    statuses: dict[str, int] = summary["by_status"]
    passed = (
        result.outcomes.get("succeeded", 0) == count
        and per_rotation <= GOAL_CALLS
        and tokens <= token_budget
        and deletes == count
        and all(not s.startswith(("4", "5")) for s in statuses)
    )
    others = fmt_counts(
        (k, v) for k, v in sorted(rotation_kinds.items()) if k not in (*ROTATION_KINDS, "token")
    )
    details = [
        f"baseline (hand-written rotation, no re-read): {BASELINE_CALLS:.0f} calls "
        f"({', '.join(ROTATION_KINDS)}); service/baseline = {per_rotation / BASELINE_CALLS:.2f}",
        f"{count} rotations ({fmt_counts(sorted(result.outcomes.items()))}) made "
        + fmt_counts((k, rotation_kinds.get(k, 0)) for k in ROTATION_KINDS)
        + f"; other platform kinds: {others or 'none'}",
        f"tokens: {tokens} for 1 worker process over {result.wall:.1f} s (budget {token_budget})",
        f"retirement: {deletes} DELETE for {count} old credentials (+{retire_lists} "
        "destination list per environment per batch)",
        f"statuses: {fmt_counts(sorted(statuses.items()))}",
    ]
    return Figure(
        name=NAME,
        title="Redox calls per rotation (sandbox journal)",
        value=f"{per_rotation:.2f} calls/rotation + {deletes / count:.2f} DELETE at retirement; "
        f"{tokens} token",
        goal=f"<= {GOAL_CALLS:.0f} per rotation (+1 DELETE); one token per process per ~5 min",
        ratio=per_rotation / GOAL_CALLS,
        passed=passed,
        command=command_for(NAME, quick),
        details=details,
    )


def _redox_summary(stack: Rig) -> dict[str, Any]:
    """The journal's counts by kind and status, Redox's traffic only."""
    entries = [e for e in stack.control.journal()["entries"] if e["path"].startswith(REDOX)]
    return {
        "total": len(entries),
        "by_kind": dict(Counter(e["kind"] for e in entries)),
        "by_status": dict(Counter(str(e["status"]) for e in entries)),
    }
