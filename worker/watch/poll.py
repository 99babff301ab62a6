"""Look at an environment's watched rotations: one log search serves all of them.

After a switch a rotation is *watched*: it stays claimed (no other rotation of the
destination starts) while no worker slot is held. Every ``ROTATOR_VERIFY__POLL_SECONDS``
beat hands the due ones to ``watch_environment``, which searches the environment's failed
deliveries once (``status=failed``, ``createdAfter`` the earliest moment any of them needs,
paginated) and judges each rotation:

* **failing**: more failed deliveries to its destination since the switch than in the same
  length of time just before it. The rotation is sent back to a worker, which reverts.
* **clean**: its window closed without that. One list of the environment's destinations
  (per poll, for all rotations ending there) checks each is still on its new credential;
  if not, the verdict is **drift** (someone moved it: never undone over their change).
* otherwise it is looked at again one poll later, with the environment's other watched
  rotations: a window ends at the first look at or after its end (at most one poll late),
  so an environment costs one search per poll however its switches were spread.

The verdict is written to the rotation record and the rotation task is sent again; the
task (under the destination's lease) does every write. Redox calls go through the shared
rate limiter like every other call.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from celery import Celery

from worker.logging import get_logger
from worker.redox.client import RedoxClient
from worker.redox.logs import LogEntry, iso_ms
from worker.store.records import RotationRecord, RotationStore
from worker.trigger import send_rotation
from worker.watch.store import WatchStore

__all__ = ["MAX_PAGES", "Verdict", "Watched", "judge", "poll_environment"]

log = get_logger(__name__)

#: Pages of failed deliveries read per poll at most (50 each); past that the poll judges on
#: the newest ones it read (the search returns newest first) and says so in the log.
MAX_PAGES = 20


class Verdict(StrEnum):
    """What a look at a watched rotation concluded."""

    WATCHING = "watching"
    CLEAN = "clean"
    FAILING = "failing"
    DRIFT = "drift"


@dataclass(frozen=True)
class Watched:
    """What the watch needs of a rotation record."""

    rotation_id: str
    destination_id: str
    environment_id: str
    new_credential_id: str
    switched_at: float
    watch_until: float

    @classmethod
    def of(cls, record: RotationRecord) -> Watched | None:
        """The record's watch, or None when it is not (or no longer) being watched."""
        if record.outcome or record.get("status") != "watching" or record.get("watch_verdict"):
            return None
        try:
            return cls(
                record.rotation_id,
                record.destination_id,
                record.get("environment_id") or "",
                record.get("new_credential_id") or "",
                float(record.get("switched_at") or "nan"),
                float(record.get("watch_until") or "nan"),
            )
        except ValueError:
            return None

    def baseline_start(self, now: float) -> float:
        """Start of the window before the switch that is as long as the one after it."""
        return self.switched_at - (min(now, self.watch_until) - self.switched_at)


def judge(watched: Watched, failures: Sequence[float], now: float) -> tuple[Verdict, int, int]:
    """The verdict from the destination's failed-delivery times: (verdict, after, before)."""
    end = min(now, watched.watch_until)
    after = sum(1 for t in failures if watched.switched_at < t <= end)
    start = watched.baseline_start(now)
    before = sum(1 for t in failures if start <= t <= watched.switched_at)
    if after > before:
        return Verdict.FAILING, after, before
    if now >= watched.watch_until:
        return Verdict.CLEAN, after, before
    return Verdict.WATCHING, after, before


def _failed_deliveries(redox: RedoxClient, environment_id: str, since: float) -> list[LogEntry]:
    """Every failed delivery in the environment created at or after ``since``."""
    entries: list[LogEntry] = []
    cursor: str | None = None
    filters = {"status": "failed", "createdAfter": iso_ms(since)}
    for _ in range(MAX_PAGES):
        page = redox.search_logs(environment_id, filters, cursor=cursor)
        entries.extend(page.entries)
        cursor = page.next_cursor
        if cursor is None:
            return entries
    log.warning("watch: more failed deliveries than one poll reads", environment=environment_id)
    return entries


def poll_environment(
    redox: RedoxClient,
    store: RotationStore,
    watch: WatchStore,
    app: Celery,
    environment_id: str,
    rotation_ids: Sequence[str],
    *,
    poll_seconds: float,
    now: float | None = None,
) -> dict[str, Verdict]:
    """Judge the environment's watched rotations; send those with a verdict back to a
    worker; return each rotation's verdict."""
    now = time.time() if now is None else now
    records = store.records(rotation_ids)
    watched = [w for w in (Watched.of(r) for r in records if r is not None) if w is not None]
    gone = set(rotation_ids) - {w.rotation_id for w in watched}
    watch.done(*gone)
    if not watched:
        return {}
    since = min(w.baseline_start(now) for w in watched)
    by_destination: dict[str, list[float]] = defaultdict(list)
    for entry in _failed_deliveries(redox, environment_id, since):
        if entry.destination_id is not None and entry.status == "failed":
            by_destination[entry.destination_id].append(entry.created_at)
    verdicts: dict[str, Verdict] = {}
    counts: dict[str, tuple[int, int]] = {}
    for w in watched:
        verdict, after, before = judge(w, by_destination.get(w.destination_id, []), now)
        verdicts[w.rotation_id], counts[w.rotation_id] = verdict, (after, before)
    found: dict[str, str | None] = {}
    # A clean credential switch is confirmed in Redox before it is called a success; a token
    # rotation (no new credential) has nothing Redox shows: its deliveries are the proof.
    confirm = [
        w for w in watched if verdicts[w.rotation_id] is Verdict.CLEAN and w.new_credential_id
    ]
    if confirm:
        current = {d.id: d.auth_credential for d in redox.list_destinations(environment_id)}
        for w in confirm:
            found[w.rotation_id] = current.get(w.destination_id)
            if current.get(w.destination_id) != w.new_credential_id:
                verdicts[w.rotation_id] = Verdict.DRIFT
    for w in watched:
        verdict = verdicts[w.rotation_id]
        if verdict is Verdict.WATCHING:
            watch.next_look(w.rotation_id, now + poll_seconds)
            continue
        after, before = counts[w.rotation_id]
        store.note_verdict(
            w.rotation_id,
            verdict=verdict.value,
            failures_after=after,
            failures_before=before,
            found_credential=found.get(w.rotation_id) or "",
        )
        watch.done(w.rotation_id)
        send_rotation(app, w.destination_id, w.rotation_id)
        log.info(
            "watch verdict",
            rotation_id=w.rotation_id,
            destination_id=w.destination_id,
            verdict=verdict.value,
            failed_after=after,
            failed_before=before,
        )
    return verdicts
