"""How a rotation ends: its events, and the one atomic terminal write.

:func:`rotation_event` builds the CloudEvent of every ``rotator.rotation.*`` type from the
record (ids only). :class:`Finisher` writes the terminal outcome, its event, the release of
the claim and the destination's state in one step (:meth:`RotationStore.finish`); a run
that finds the rotation already finished publishes nothing. Either way the follow-up
(next due time, retirement) runs, and must be idempotent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.events import Outcome, cloud_event, error_data
from worker.logging import get_logger
from worker.metrics import MetricsRecorder
from worker.signals import step_done
from worker.store.destinations import finished_fields
from worker.store.lease import Fence
from worker.store.records import TOKEN_KIND, RotationRecord, RotationStore

__all__ = ["AfterRotation", "Finisher", "rotation_event"]

log = get_logger(__name__)

#: Called after a terminal outcome is recorded (schedule next due, queue retirement).
#: Must be idempotent: a redelivered task calls it again.
AfterRotation = Callable[[RotationRecord], None]


def rotation_event(
    record: RotationRecord, kind: str, *, error: BaseException | None = None, **extra: Any
) -> dict[str, Any]:
    """The CloudEvent ``rotator.rotation.<kind>`` from the record (ids only)."""
    data: dict[str, Any] = {
        "rotationId": record.rotation_id,
        "destinationId": record.destination_id,
        "environmentId": record.get("environment_id"),
        "oldCredentialId": record.get("old_credential_id"),
        "newCredentialId": record.get("new_credential_id"),
        "trigger": record.get("trigger"),
        "attempt": record.attempt,
        "error": error_data(error),
    }
    if record.kind == TOKEN_KIND:  # the credential does not change: say what did
        data["kind"] = TOKEN_KIND
    data.update(extra)
    return cloud_event(f"rotator.rotation.{kind}", record.destination_id, data)


@dataclass
class Finisher:
    """Ends rotations: exactly one terminal event each, then the follow-up."""

    store: RotationStore
    after_rotation: AfterRotation | None = None
    metrics: MetricsRecorder | None = None
    clock: Callable[[], float] = time.time

    def finish(
        self,
        record: RotationRecord,
        outcome: Outcome,
        exc: BaseException | None,
        fence: Fence | None,
    ) -> Outcome:
        """Write the terminal ``outcome`` (once, and only while ``fence`` holds: LockLost
        otherwise) and run the follow-up."""
        now = repr(self.clock())
        err = error_data(exc)
        record_fields = {**record.take_pending(), "finished_at": now, "step": "publish"}
        if err:
            record_fields.update(error_class=err["class"], error_message=err["message"])
        dest_fields = finished_fields(
            outcome,
            rotation_id=record.rotation_id,
            environment_id=record.get("environment_id"),
            new_credential_id=record.get("new_credential_id"),
            finished_at=now,
            error=f"{err['class']}: {err['message']}" if err else None,
            token=record.kind == TOKEN_KIND,
        )
        event = rotation_event(record, outcome.value, error=exc)
        if self.store.finish(
            record,
            outcome,
            event,
            record_fields=record_fields,
            destination_fields=dest_fields,
            fence=fence,
        ):
            log.info("rotation finished", outcome=outcome.value)
            if self.metrics is not None:
                self.metrics.rotation_finished(outcome, err["class"] if err else None)
            step_done("publish", record.rotation_id)
            # What finish just wrote, without reading it back.
            fields = {**record.fields, **record_fields, "outcome": outcome, "status": outcome}
            self.after(RotationRecord(fields))
            return outcome
        earlier = self.store.record(record.rotation_id)  # finished by an earlier run
        if earlier is not None:
            self.after(earlier)
        return outcome

    def after(self, record: RotationRecord) -> None:
        """The follow-up of a finished rotation (idempotent)."""
        if self.after_rotation is not None:
            self.after_rotation(record)
