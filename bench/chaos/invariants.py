"""The invariants every chaos scenario ends with, counted as figures.

* every destination references exactly the credential its last successful rotation made
  (a credential this service created), or its untouched original after failures;
* 0 duplicate credentials (two credentials for one rotation, or a POST that created twice);
* 0 orphan credentials once retirement has run (every credential left is referenced);
* exactly one terminal event per rotation (none lost, none doubled), and no claim left held;
* 0 secret values anywhere: every Redis key of every type, decoded Celery messages, the event
  stream, every service log, and any extra place a scenario adds (Flower's API).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.chaos.harness import outcome_of
from devstack.readback import decoded_messages, dump_redis
from devstack.rig import Rig
from worker.events import TERMINAL_OUTCOMES

__all__ = ["Figures", "check", "decoded_messages", "dump_redis", "find_leaks"]


@dataclass
class Figures:
    """What one scenario run produced, and what broke."""

    scenario: str
    size: str
    runs: int = 0
    completions: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    orphans: int = 0
    leaks: int = 0
    terminal_min: int = 0
    terminal_max: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0
    note: str = ""

    @property
    def ok(self) -> bool:
        """True when every invariant held."""
        return not self.violations

    def fail(self, message: str) -> None:
        """Record a broken invariant (one line)."""
        self.violations.append(message)


def check(
    chaos: Rig,
    figures: Figures,
    rotation_ids: list[str],
    originals: dict[str, str],
    *,
    allowed: frozenset[str] = frozenset({"succeeded"}),
    extra_places: dict[str, list[str]] | None = None,
    retire: bool = True,
) -> Figures:
    """Count the figures for ``rotation_ids`` and record every broken invariant."""
    chaos.control.set_faults()  # retirement and the readers must not be faulted
    chaos.control.set_rate_limit(None)
    figures.extra["settled"] = chaos.settle()
    events = chaos.events()
    lost = _terminal(figures, events, rotation_ids, allowed)
    if lost:
        figures.fail(f"where the lost ones stopped: {_describe(chaos, lost[:3])}")
    _claims(chaos, figures)
    _destinations(chaos, figures, events, originals)
    _duplicates(chaos, figures)
    if retire:
        figures.extra["retired"] = chaos.retire_everything()
    state = chaos.control.state()
    in_use = {d["authCredential"] for d in state["destinations"]}
    orphans = [c["id"] for c in state["credentials"] if c["id"] not in in_use]
    figures.orphans = len(orphans)
    if orphans and retire:
        figures.fail(f"{len(orphans)} orphan credential(s) after retirement: {orphans[:3]}")
    _leaks(chaos, figures, extra_places or {})
    return figures


def _describe(chaos: Rig, rotation_ids: list[str]) -> str:
    """Status, step and run count of each rotation's record (or that it has none)."""
    parts = []
    for rid, record in zip(rotation_ids, chaos.store().records(rotation_ids), strict=True):
        if record is None:
            parts.append(f"{rid}: no record")
            continue
        fields = (record.get("status"), record.get("step"), record.attempt)
        parts.append(f"{rid}: status={fields[0]} step={fields[1]} runs={fields[2]}")
    return "; ".join(parts)


def _terminal(
    figures: Figures, events: list[dict[str, Any]], ids: list[str], allowed: frozenset[str]
) -> list[str]:
    """Count terminal events; record what broke; return the rotations without one."""
    terminal: dict[str, list[str]] = {}
    started: set[str] = set()
    for event in events:
        outcome = outcome_of(event)
        rid = event["data"].get("rotationId")
        if outcome in TERMINAL_OUTCOMES:
            terminal.setdefault(rid, []).append(outcome)
        elif outcome == "started":
            started.add(rid)
    everyone = set(ids) | started
    counts = [len(terminal.get(rid, [])) for rid in everyone]
    figures.runs = len(everyone)
    figures.completions = sum(1 for c in counts if c >= 1)
    figures.terminal_min = min(counts, default=0)
    figures.terminal_max = max(counts, default=0)
    figures.outcomes = Counter(terminal[rid][0] for rid in everyone if rid in terminal)
    lost = [rid for rid in everyone if rid not in terminal]
    if lost:
        figures.fail(f"{len(lost)} rotation(s) without a terminal event (lost): {lost[:3]}")
    doubled = [rid for rid in everyone if len(terminal.get(rid, [])) > 1]
    if doubled:
        figures.fail(f"{len(doubled)} rotation(s) with more than one terminal event")
    unexpected = {o: n for o, n in figures.outcomes.items() if o not in allowed}
    if unexpected:
        figures.fail(f"unexpected outcomes {unexpected} (allowed: {sorted(allowed)})")
    return lost


def _claims(chaos: Rig, figures: Figures) -> None:
    """Nothing left claimed or locked once every rotation ended (no job silently stuck)."""
    held = [
        str(k)
        for pattern in (f"{chaos.keys.prefix}:active:*", f"{chaos.keys.prefix}:lock:*")
        for k in chaos.redis.scan_iter(match=pattern, count=1000)
    ]
    figures.extra["claims_left"] = len(held)
    if held:
        figures.fail(f"{len(held)} claim/lock key(s) still held: {held[:3]}")


def _destinations(
    chaos: Rig, figures: Figures, events: list[dict[str, Any]], originals: dict[str, str]
) -> None:
    created = chaos.redis.hgetall(chaos.keys.created_credentials)
    expected = dict(originals)
    for event in events:  # the last success of each destination decides what it should use
        if outcome_of(event) == "succeeded" and event["data"]["destinationId"] in expected:
            expected[event["data"]["destinationId"]] = event["data"]["newCredentialId"]
    state = {d["id"]: d for d in chaos.control.state()["destinations"]}
    wrong = []
    for dest, want in expected.items():
        have = state[dest]["authCredential"]
        ours = want == originals[dest] or want in created
        if have != want or not ours:
            wrong.append(f"{dest}: uses {have}, expected {want}")
    figures.extra["wrong_destinations"] = len(wrong)
    if wrong:
        figures.fail(f"{len(wrong)} destination(s) reference the wrong credential: {wrong[:2]}")


def _duplicates(chaos: Rig, figures: Figures) -> None:
    """Two credentials with one rotation's name, or more 201 creates than credentials made."""
    state = chaos.control.state()
    names = Counter(c["name"] for c in state["credentials"] if "-rot-" in str(c["name"]))
    by_name = sum(n - 1 for n in names.values() if n > 1)
    journal = chaos.control.journal()["summary"]["by_kind_status"]
    creates = int(journal.get("create_credential:201", 0)) + int(
        journal.get("create_credential:200", 0)
    )
    made = len(chaos.redis.hgetall(chaos.keys.created_credentials))
    figures.duplicates = max(by_name, creates - made)
    figures.extra["creates"] = creates
    if figures.duplicates:
        figures.fail(
            f"{figures.duplicates} duplicate credential(s) "
            f"(same name: {by_name}; creates {creates} vs recorded {made})"
        )


def _leaks(chaos: Rig, figures: Figures, extra: dict[str, list[str]]) -> None:
    secrets = {v for fields in chaos.control.secrets().values() for v in fields.values() if v}
    places = dump_redis(chaos.redis)
    places["celery message bodies"] = decoded_messages([t for v in places.values() for t in v])
    places["event stream"] = [json.dumps(e) for e in chaos.events()]
    places["service logs"] = chaos.logs()
    places.update(extra)
    found = find_leaks(secrets, places)
    figures.leaks = len(found)
    figures.extra["secrets_scanned"] = len(secrets)
    if found:
        figures.fail(f"{len(found)} secret value(s) found in: {sorted({p for p, _ in found})}")


def find_leaks(secrets: set[str], places: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(place, secret prefix) for every secret found in any text of any place."""
    found = []
    for place, texts in places.items():
        blob = "\n".join(texts)
        found += [(place, secret[:4]) for secret in secrets if secret in blob]
    return found
