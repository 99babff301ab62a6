"""Starting rotations: every trigger (CLI, schedule, Flower, fleet) goes through here.

The claim is atomic in Redis (see :mod:`worker.store.records`): a second trigger for a
destination whose rotation is still running gets that rotation's id back, and no message
is sent. The task itself enforces the same guard, so a task sent some other way (Flower's
``async-apply``) cannot start a second rotation either.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from celery import Celery

from config.registry import is_redox_id
from worker.errors import UsageError
from worker.events import TERMINAL_OUTCOMES, EventStream
from worker.store.records import CREDENTIAL_KIND, Claim, RotationStore

__all__ = [
    "ROTATE_TASK",
    "TRIGGERS",
    "check_destination_id",
    "request_rotation",
    "send_rotation",
    "wait_for_outcome",
]

#: The Celery task name users see in Flower and call through its API.
ROTATE_TASK = "rotate_destination"
#: Who asked for a rotation (published in every event's ``trigger``).
TRIGGERS = ("schedule", "operator", "api", "fleet", "retry")


def check_destination_id(value: str) -> str:
    """The id if it looks like a Redox id (letters, digits, ``-``/``_``, ≤ 64), else UsageError."""
    if not is_redox_id(value):
        raise UsageError(f"invalid destination id {value!r} (expected a Redox id such as a UUID)")
    return value


def send_rotation(app: Celery, destination_id: str, rotation_id: str) -> None:
    """Send the task message (ids only; argsrepr keeps Flower readable).

    The outcome travels on the event stream, so no task result is stored for a triggered
    rotation (``ignore_result``): the sender does not subscribe to a result channel and the
    worker writes no STARTED/SUCCESS state. A task sent by hand (Flower) keeps its result.
    """
    app.send_task(
        ROTATE_TASK,
        args=[destination_id, rotation_id],
        argsrepr=f"(destination={destination_id}, rotation={rotation_id})",
        ignore_result=True,
    )


def request_rotation(
    app: Celery,
    store: RotationStore,
    destination_id: str,
    *,
    trigger: str,
    reason: str = "",
    retire_now: bool = False,
    kind: str = CREDENTIAL_KIND,
) -> Claim:
    """Claim a rotation and send its task; return the claim (existing id if one is running,
    of either kind: one rotation per destination at a time). ``retire_now``: the old
    credential and its IdP secret go right after the watch. ``kind``: ``auth_credential``,
    or ``verification_token`` (the destination's token, through its receiver's store)."""
    check_destination_id(destination_id)
    claim = store.claim(
        destination_id, trigger=trigger, reason=reason, retire_now=retire_now, kind=kind
    )
    if claim.created:
        try:
            send_rotation(app, destination_id, claim.rotation_id)
        except Exception:
            store.release_claim(destination_id, claim.rotation_id)
            raise
    return claim


def describe(claim: Claim, destination_id: str) -> dict[str, Any]:
    """JSON-able summary of a trigger result."""
    return {
        "rotationId": claim.rotation_id,
        "destinationId": destination_id,
        "created": claim.created,
    }


def wait_for_outcome(
    events: EventStream,
    store: RotationStore,
    rotation_id: str,
    since: str,
    timeout: float,
    *,
    on_switched: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any] | None:
    """Follow the stream from ``since`` until the rotation's terminal event (None on timeout);
    ``on_switched`` sees its ``switched`` event on the way."""
    deadline = time.monotonic() + timeout
    for entry in events.follow(since=since, block_ms=500):
        if entry is not None:
            event = entry.event
            data = event.get("data") or {}
            if data.get("rotationId") == rotation_id:
                outcome = str(event.get("type", "")).rsplit(".", 1)[-1]
                if outcome in TERMINAL_OUTCOMES:
                    return event
                if outcome == "switched" and on_switched is not None:
                    on_switched(event)
        record = store.record(rotation_id)
        if record is not None and record.outcome and entry is None:
            return {
                "type": f"rotator.rotation.{record.outcome}",
                "data": {"rotationId": rotation_id},
            }
        if time.monotonic() > deadline:
            return None
    return None
