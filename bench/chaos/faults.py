"""Redox misbehaving: a fault storm, permanent errors on each call, token expiry, slowness."""

from __future__ import annotations

import time
from typing import Any

from bench.chaos.harness import chaos_rig
from bench.chaos.invariants import Figures, check
from devstack.rig import Rig

__all__ = ["PERMANENT_CALLS", "fault_storm", "permanent_errors", "slow_redox", "token_expiry"]

#: A hung request outlives the client's read timeout (1 s here) by far.
STORM_ENV = {"ROTATOR_REDOX__READ_TIMEOUT": "1", "ROTATOR_RETRY__MAX_SECONDS": "10"}


def fault_storm(runs: int, size: str, *, workers: int = 2, concurrency: int = 6) -> Figures:
    """``runs`` rotations with 20 % 5xx, 10 % 429 and 5 % hangs past the client timeout."""
    figures = Figures("fault-storm", size)
    started = time.monotonic()
    with chaos_rig(env=STORM_ENV) as chaos:
        dests = chaos.seed(runs)
        originals = chaos.originals()
        chaos.control.set_faults(
            p500=0.07, p502=0.06, p503=0.07, p429=0.10, p_hang=0.05, hang_seconds=5
        )
        for number in range(workers):
            chaos.worker(f"s{number}", concurrency=concurrency)
        ids = chaos.trigger(dests)
        chaos.wait_terminal(ids, timeout=120 + runs * 1.5, strict=False)
        summary = chaos.control.journal()["summary"]
        statuses = summary["by_status"]
        figures.extra["injected"] = {
            k: v for k, v in statuses.items() if k in ("429", "500", "502", "503", "499", "504")
        }
        figures.extra["calls"] = summary["total"]
        check(chaos, figures, ids, originals)
    figures.seconds = time.monotonic() - started
    return figures


#: (label, fault key builder, HTTP method, outcome expected, journal kind).
PERMANENT_CALLS: tuple[tuple[str, str, str, str], ...] = (
    ("read", "GET", "failed", "get_destination"),
    ("credential", "GET", "failed", "get_credential"),
    # The IdP secret issued before the create is revoked: something was undone.
    ("create", "POST", "rolled_back", "create_credential"),
    ("switch", "PATCH", "rolled_back", "patch_destination"),
)
PERMANENT_STATUSES = (403, 404, 422)
ERROR_CLASS = {403: "RedoxRejected", 404: "RedoxNotFound", 422: "RedoxRejected"}


def _fault_key(call: str, dest: str, original: str) -> str:
    if call == "credential":  # the destination's current credential, read by id
        return f"authcredentials/{original}"
    if call == "create":
        return "v1/authcredentials"
    return dest


def permanent_errors(per_case: int, size: str) -> Figures:
    """403/404/422 on each call: one attempt, rollback, failed/rolled_back naming the class."""
    figures = Figures("permanent-errors", size)
    started = time.monotonic()
    ids: list[str] = []
    attempts: dict[str, int] = {}
    with chaos_rig() as chaos:
        chaos.worker("p1", concurrency=4)
        app = chaos.app()
        originals: dict[str, str] = {}
        for call, method, expected, kind in PERMANENT_CALLS:
            for status in PERMANENT_STATUSES:
                dests = chaos.seed(per_case)
                originals.update({d: chaos.originals()[d] for d in dests})
                before = chaos.control.journal()["next"]
                faults: dict[str, Any] = {"permanent": {}, "permanent_methods": {}}
                # Each destination's own read, credential and switch; the one create path.
                for dest in dests if call != "create" else dests[:1]:
                    k = _fault_key(call, dest, originals[dest])
                    faults["permanent"][k] = status
                    faults["permanent_methods"][k] = [method]
                chaos.control.set_faults(**faults)
                case = chaos.trigger(dests, app=app)
                seen = chaos.wait_terminal(case, timeout=60, strict=False)
                chaos.settle(30)
                chaos.control.set_faults()
                entries = chaos.control.journal(before)["entries"]
                hits = sum(1 for e in entries if e["kind"] == kind and e["status"] == status)
                attempts[f"{call}:{status}"] = hits
                if hits != len(case):
                    figures.fail(f"{call} {status}: {hits} attempts for {len(case)} rotations")
                _check_events(chaos, figures, case, seen, expected, ERROR_CLASS[status], call)
                ids += case
        figures.extra["attempts_per_rotation"] = sorted(
            {round(n / per_case, 2) for n in attempts.values()}
        )
        check(chaos, figures, ids, originals, allowed=frozenset({"failed", "rolled_back"}))
        leftovers = [c for c in chaos.control.state()["credentials"] if "-rot-" in c["name"]]
        figures.extra["half_done"] = len(leftovers)
        if leftovers:
            figures.fail(f"{len(leftovers)} new credential(s) left after rollbacks")
    figures.seconds = time.monotonic() - started
    return figures


def _check_events(
    chaos: Rig,
    figures: Figures,
    case: list[str],
    seen: dict[str, str],
    expected: str,
    error_class: str,
    call: str,
) -> None:
    wanted = set(case)
    for event in chaos.events():
        data = event["data"]
        if data.get("rotationId") not in wanted or not event["type"].endswith(expected):
            continue
        wanted.discard(data["rotationId"])
        if (data.get("error") or {}).get("class") != error_class:
            figures.fail(f"{call}: event error {data.get('error')} is not {error_class}")
    bad = {rid: seen.get(rid) for rid in wanted}
    if bad:
        figures.fail(f"{call}: {len(bad)} rotation(s) did not end {expected}: {bad}")


def token_expiry(runs: int, size: str, *, spread_seconds: float) -> Figures:
    """Tokens live 6 s (refreshed 2 s early) while rotations run for ``spread_seconds``."""
    figures = Figures("token-expiry", size)
    started = time.monotonic()
    env = {"ROTATOR_REDOX__TOKEN_REFRESH_MARGIN": "2"}
    with chaos_rig(sandbox_args=("--token-ttl", "6"), env=env) as chaos:
        dests = chaos.seed(runs)
        originals = chaos.originals()
        chaos.worker("t1", concurrency=2)
        chaos.worker("t2", concurrency=2)
        app = chaos.app()
        ids: list[str] = []
        batches = max(1, int(spread_seconds))
        for number in range(batches):  # a steady trickle for the whole period
            ids += chaos.trigger(dests[number::batches], app=app)
            time.sleep(spread_seconds / batches)
        chaos.wait_terminal(ids, timeout=60 + runs, strict=False)
        elapsed = time.monotonic() - started
        summary = chaos.control.journal()["summary"]
        tokens = int(summary["by_kind"].get("token", 0))
        calls = int(summary["total"]) - tokens
        unauthorized = int(summary["by_status"].get("401", 0))
        figures.extra.update(tokens=tokens, calls=calls, unauthorized=unauthorized)
        # Two worker processes, each refreshing about every 4 s, plus one at start each.
        ceiling = 2 * (elapsed / 4 + 2)
        if tokens < 2:
            figures.fail("tokens were never refreshed")
        if tokens > ceiling or tokens * 2 > calls:
            figures.fail(f"{tokens} tokens for {calls} calls: fetched per call, not cached")
        if unauthorized:
            figures.fail(f"{unauthorized} call(s) went out with an expired token (401)")
        check(chaos, figures, ids, originals)
    figures.seconds = time.monotonic() - started
    return figures


def slow_redox(runs: int, size: str) -> Figures:
    """Every reply takes 0.6-1.0 s against a 1.2 s read timeout, with a short visibility
    timeout: no message is redelivered while its rotation runs and none runs twice."""
    figures = Figures("slow-redox", size)
    started = time.monotonic()
    env = {
        "ROTATOR_REDOX__READ_TIMEOUT": "1.2",
        "ROTATOR_CELERY__SOFT_TIME_LIMIT": "12",
        "ROTATOR_CELERY__TIME_LIMIT": "14",
        "ROTATOR_CELERY__VISIBILITY_TIMEOUT": "16",
    }
    with chaos_rig(env=env) as chaos:
        dests = chaos.seed(runs)
        originals = chaos.originals()
        chaos.control.set_faults(latency_ms=800, latency_jitter_ms=200)
        chaos.worker("l1", concurrency=3)
        chaos.worker("l2", concurrency=3)
        ids = chaos.trigger(dests)
        chaos.wait_terminal(ids, timeout=60 + runs * 3, strict=False)
        records = [chaos.store().record(rid) for rid in ids]
        reruns = sum(1 for r in records if r is not None and r.attempt != 1)
        figures.extra["reruns"] = reruns
        if reruns:
            figures.fail(f"{reruns} rotation(s) ran more than once (redelivered or retried)")
        check(chaos, figures, ids, originals)
    figures.seconds = time.monotonic() - started
    return figures
