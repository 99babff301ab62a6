"""Figure 2: Redox calls per rotation, counted by the sandbox (its journal), not by us.

N destinations are rotated once by one worker process; then ``retire_due`` retires the old
credentials (grace 0). The journal gives every request by kind: the platform calls of the
rotations divided by N, the token requests (one per worker process per token lifetime),
and the retirement's calls (one DELETE per old credential plus one destinations list per
environment per batch). Baseline: the 4 calls a hand-written rotation makes (GET destination,
list credentials, POST credential, PATCH destination).
"""

from __future__ import annotations

import math

from bench.harness import UNLIMITED, BenchStack, Driver, Figure, command_for, fmt_counts

__all__ = ["run"]

NAME = "calls"
GOAL_CALLS = 4.0
ROTATION_KINDS = ("get_destination", "list_credentials", "create_credential", "patch_destination")


def run(stack: BenchStack, quick: bool = False) -> Figure:
    """Rotate N destinations once, retire their old credentials, count the journal."""
    count = 5 if quick else 50
    stack.prepare()
    destinations = stack.control.seed(count)
    stack.control.clear_journal()
    stack.start_worker("calls", concurrency=8, pool="threads", env=UNLIMITED)
    driver = Driver(stack.settings(UNLIMITED))
    try:
        result = driver.run(destinations, timeout=120)
        rotation_summary = stack.journal_summary()
        driver.retire_now()
    finally:
        driver.close()
    summary = stack.journal_summary()
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
        f"baseline (hand-written rotation): {len(ROTATION_KINDS)} calls "
        f"({', '.join(ROTATION_KINDS)}); service/baseline = {per_rotation / 4:.2f}",
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
